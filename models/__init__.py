"""SQLAlchemy models. Importing this package registers every table on ``Base.metadata``."""

from models.activity import AuditAction, AuditEvent, SyncKind, SyncRun, SyncRunStatus, TaskRecord
from models.base import Base, normalize_email, utcnow
from models.connection import (
    ALLOWED_TRANSITIONS,
    AuthMethod,
    ConnectionStatus,
    InvalidTransition,
    KeyLevel,
    OAuthAuthorization,
    PagerDutyConnection,
    PendingStatus,
    Region,
)
from models.handoffs import ScheduledHandoff
from models.history import OnDutyInterval
from models.outbox import OutboxKind, OutboxMessage, OutboxSequence
from models.pagerduty import (
    PagerDutyOnCall,
    PagerDutySchedule,
    PagerDutyScheduleMember,
    PagerDutyUser,
)
from models.upcoming import RotationUpcoming
from models.workspace import (
    Member,
    Role,
    Rotation,
    RotationMember,
    RotationMode,
    RotationOnDuty,
    RotationSchedule,
    Workspace,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "AuditAction",
    "AuditEvent",
    "AuthMethod",
    "Base",
    "ConnectionStatus",
    "InvalidTransition",
    "KeyLevel",
    "Member",
    "OAuthAuthorization",
    "OnDutyInterval",
    "OutboxKind",
    "OutboxMessage",
    "OutboxSequence",
    "PagerDutyConnection",
    "PagerDutyOnCall",
    "PagerDutySchedule",
    "PagerDutyScheduleMember",
    "PagerDutyUser",
    "PendingStatus",
    "Region",
    "Role",
    "Rotation",
    "RotationMember",
    "RotationMode",
    "RotationOnDuty",
    "RotationSchedule",
    "RotationUpcoming",
    "ScheduledHandoff",
    "SyncKind",
    "SyncRun",
    "SyncRunStatus",
    "TaskRecord",
    "Workspace",
    "normalize_email",
    "utcnow",
]
