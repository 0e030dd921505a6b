"""The public task contract, declared once.

Other services enqueue our tasks by name, so each task's name, queue, keyword arguments, time
limits, retry family and result are a public, stable contract. ``TASKS`` is the one table of
them; everything else is derived from it:

* the task decorators (``workers.tasking.app.contract_task``, which also checks that the
  decorated function takes exactly the declared keyword arguments and defaults);
* ``celeryconfig``'s ``task_routes``, queues and beat schedule (``task_routes``, ``QUEUES``,
  ``beat_schedule``);
* what ``workers.tasking.enqueue.enqueue`` accepts (known names and arguments only);
* the task table in docs/tasks.md (``workers.tasking.docs``; a test compares the two).

To add a task: declare a ``TaskSpec`` here (and add it to ``TASKS``), write a thin function in
the feature's ``tasks/`` module decorated with ``@contract_task(SPEC)``, run
``python -m workers.tasking.docs`` and paste its output between the markers in
docs/tasks.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from workers.tasking.checks import (
    Check,
    Refused,
    one_of,
    optional_uuid_text,
    short_text,
    uuid_list,
    uuid_text,
    whole_number,
)
from workers.tasking.retrypolicy import MAX_RETRY_COUNTDOWN as MAX_RETRY_COUNTDOWN
from workers.tasking.retrypolicy import RetryPolicy as RetryPolicy

if TYPE_CHECKING:
    from workers.core.settings import Settings

# --- queues ------------------------------------------------------------------------------------
# `interactive` holds work a person is waiting for (and the 30-second OAuth code); `sync` holds
# bulk periodic work; `schedule` holds beat's own rounds (the fan-out and its shards, the token
# sweep), read by a small consumer of its own, so they never wait behind syncs.
INTERACTIVE = "interactive"
SYNC = "sync"
SCHEDULE = "schedule"
QUEUES: tuple[str, ...] = (INTERACTIVE, SYNC, SCHEDULE)

# --- ceilings every task stays under (celeryconfig sets the visibility timeout from them) ------
TASK_SOFT_TIME_LIMIT = 240
TASK_TIME_LIMIT = 300

# Argument names that would suggest a secret travels in a message (tasks take ids only).
SECRET_WORDS = ("key", "token", "secret", "code", "verifier", "password")


# --- retry families ----------------------------------------------------------------------------


class Family(StrEnum):
    """How a task retries; each family is one task base class in ``workers.tasking.app``."""

    CONNECT = "connect"
    SYNC = "sync"
    BEAT = "beat"
    ONCE = "once"


RETRY_POLICIES: Mapping[Family, RetryPolicy | None] = {
    # A person is waiting: short waits. PagerDuty unreachable (5xx, timeouts) or rate limited.
    Family.CONNECT: RetryPolicy(
        base=2.0, cap=60.0, retried="PagerDuty unreachable or rate limited"
    ),
    Family.SYNC: RetryPolicy(
        base=5.0, cap=300.0, retried="PagerDuty unreachable or rate limited", reset_jitter=2.0
    ),
    # Beat fires again at the next interval; a one-shot task has nothing to retry.
    Family.BEAT: None,
    Family.ONCE: None,
}


# --- the table ---------------------------------------------------------------------------------


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Kwarg:
    name: str
    type: str
    meaning: str
    default: Any = REQUIRED
    # What a value must look like (``Refused`` otherwise); every public argument has one.
    check: Check | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def signature(self) -> str:
        if self.required:
            return f"`{self.name}: {self.type}`"
        return f"`{self.name}: {self.type} = {self.default!r}`".replace("'", '"')


@dataclass(frozen=True)
class Beat:
    """A RedBeat schedule entry that sends the task with no arguments."""

    entry: str
    every: Callable[[Settings], float]
    describe: str


@dataclass(frozen=True)
class TaskSpec:
    name: str
    # The ``tasks`` module that defines it (the worker imports these at start-up).
    module: str
    queue: str
    kwargs: tuple[Kwarg, ...]
    soft_time_limit: int
    time_limit: int
    family: Family
    max_retries: int
    # What the task returns (a small plain dict, never a secret), in docs/tasks.md's words.
    result: str
    # Why a task that does not retry does not (shown in the docs).
    no_retry_because: str = ""
    # What a task that retries retries, when it is not the whole task (shown in the docs).
    retries_note: str = ""
    beat: Beat | None = None
    deprecated: bool = False
    # Anything else the docs' kwargs column should say (e.g. the allowed values of `kind`).
    kwargs_note: str = ""
    # Bulk periodic work stores no result and no STARTED state (nobody asks for them; they cost
    # Redis writes per message); work a person or service may poll keeps both.
    store_result: bool = True

    @property
    def retry_policy(self) -> RetryPolicy | None:
        return RETRY_POLICIES[self.family] if self.max_retries else None

    def kwarg_names(self) -> frozenset[str]:
        return frozenset(k.name for k in self.kwargs)

    def check_kwargs(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments as the task receives them, or ``Refused`` saying what is wrong:
        unknown or missing arguments, or a value of the wrong shape (a ``connection_id`` that
        is not a UUID, an unknown ``kind``)."""
        unknown = sorted(str(k) for k in set(kwargs) - self.kwarg_names())
        if unknown:
            raise Refused(f"{self.name} takes no argument {', '.join(unknown)}")
        missing = [k.name for k in self.kwargs if k.required and k.name not in kwargs]
        if missing:
            raise Refused(f"{self.name} needs {', '.join(missing)}")
        checked: dict[str, Any] = {}
        for kwarg in self.kwargs:
            if kwarg.name in kwargs:
                value = kwargs[kwarg.name]
                checked[kwarg.name] = kwarg.check(kwarg.name, value) if kwarg.check else value
        return checked

    def check_message(self, args: Any, kwargs: Any) -> dict[str, Any]:
        """``check_kwargs`` for a message as it arrives (positional arguments are refused)."""
        if args:
            raise Refused(f"{self.name} takes keyword arguments only, got {len(args)} positional")
        if not isinstance(kwargs, Mapping):
            raise Refused(f"{self.name} takes keyword arguments as a JSON object")
        return self.check_kwargs(kwargs)


CONNECTION_ID = Kwarg("connection_id", "str", "The connection's id (UUID).", check=uuid_text)
SYNC_KINDS = ("scheduled", "manual", "initial", "binding")  # why a sync runs (its SyncRun says)

VALIDATE_API_KEY = TaskSpec(
    name="pagerduty.validate_api_key",
    module="tasks.connections",
    queue=INTERACTIVE,
    kwargs=(
        CONNECTION_ID,
        Kwarg(
            "generation",
            "int",
            "The connection's generation when the key was stored, or the pending generation "
            "of a new key checked beside the live one.",
            check=whole_number,
        ),
    ),
    # A few PagerDuty calls (10 s timeout each; a slow one retries). The hard limit + 5 s is
    # how long a killed check holds its deadline (workers.deadlines): 45 s keeps a check whose
    # worker died and whose message was lost inside issue 19's 60 s goal.
    soft_time_limit=30,
    time_limit=40,
    family=Family.CONNECT,
    max_retries=5,
    result="`{outcome, connection_id, message}`",
)
EXCHANGE_OAUTH_CODE = TaskSpec(
    name="pagerduty.exchange_oauth_code",
    module="tasks.connections",
    queue=INTERACTIVE,
    kwargs=(Kwarg("authorization_id", "str", "The pending OAuth login (UUID).", check=uuid_text),),
    # The code dies 30 seconds after PagerDuty issued it: the exchange itself is never retried
    # by the task (only within seconds, in the call). Once PagerDuty issued the tokens they are
    # kept, so a check of their id_token that PagerDuty's JWKS did not answer is retried (each
    # retry pushes the connection's deadline past its countdown: workers.deadlines).
    soft_time_limit=25,
    time_limit=40,
    family=Family.CONNECT,
    max_retries=4,
    result="`{outcome, connection_id, message}`",
    retries_note="the id_token check only, from the kept tokens; never the single-use code",
)
REFRESH_TOKEN = TaskSpec(
    name="pagerduty.refresh_token",
    module="tasks.connections",
    queue=INTERACTIVE,
    kwargs=(CONNECTION_ID,),
    soft_time_limit=60,
    time_limit=90,
    family=Family.CONNECT,
    max_retries=6,
    result="`{connection_id, outcome, expires_at?, status?}`",
)
REFRESH_EXPIRING_TOKENS = TaskSpec(
    name="pagerduty.refresh_expiring_tokens",
    module="tasks.connections",
    queue=SCHEDULE,
    kwargs=(),
    soft_time_limit=60,
    time_limit=90,
    family=Family.BEAT,
    max_retries=0,
    # stale_validations stays for readers of the result: lost validations end by their deadline.
    result="`{refreshes_enqueued, stale_validations, abandoned_logins, expired_account_changes}` "
    "(`stale_validations`: always 0)",
    no_retry_because="next beat",
    beat=Beat("refresh-expiring-tokens", lambda settings: 300.0, "every 5 min"),
)
SYNC_CONNECTION = TaskSpec(
    name="pagerduty.sync_connection",
    module="tasks.sync",
    queue=SYNC,
    kwargs=(
        CONNECTION_ID,
        Kwarg(
            "kind",
            "str",
            "Why the sync runs; recorded on the SyncRun. Anything else is refused.",
            default="scheduled",
            check=one_of(*SYNC_KINDS),
        ),
    ),
    kwargs_note="(`scheduled`, `manual`, `initial`, `binding`)",
    soft_time_limit=150,
    time_limit=180,
    family=Family.SYNC,
    max_retries=5,
    result="`{status, connection_id, sync_run_id?, created, updated, deleted, requests, passes, "
    "unmatched_on_call, read?, error?, retry?, retry_after?}` (`read`: `check` or `directory`; "
    "`retry`: `rate_limited` or `transient`, once the retries are spent)",
)
MAX_CHECK_BATCH = 500  # connection ids per batch message at most
BATCH_IDS = "Due connections (UUIDs, at most 500); beat's fan-out sends them."
CHECK_CONNECTIONS = TaskSpec(
    name="pagerduty.check_connections",
    module="tasks.sync",
    queue=SYNC,
    kwargs=(Kwarg("connection_ids", "list[str]", BATCH_IDS, check=uuid_list(MAX_CHECK_BATCH)),),
    soft_time_limit=240,
    time_limit=300,
    family=Family.BEAT,
    max_retries=0,
    result="`{connections, covered, quiet, applied, single, failed, unavailable, requests, ...}`",
    no_retry_because="a lost batch costs one interval; a failed check sends its own retry",
    store_result=False,
)
SHARD_WORDS = "This shard's number, 0 to shards - 1."
SHARDS_WORDS = "0: a beat round (it shards itself if need be)."
SCHEDULE_SYNCS = TaskSpec(
    name="pagerduty.schedule_syncs",
    module="tasks.sync",
    queue=SCHEDULE,
    kwargs=(
        Kwarg("shard", "int", SHARD_WORDS, default=0, check=whole_number),
        Kwarg("shards", "int", SHARDS_WORDS, default=0, check=whole_number),
    ),
    soft_time_limit=45,
    time_limit=55,
    family=Family.BEAT,
    max_retries=0,
    result="`{enqueued, batches, shards}`: connections claimed (at most 2,000), batch messages "
    "published, shard tasks published",
    no_retry_because="next beat",
    beat=Beat(
        "schedule-syncs",
        lambda settings: float(settings.sync_interval_seconds),
        "every `RRPD_SYNC_INTERVAL_SECONDS`",
    ),
)
DISCONNECT = TaskSpec(
    name="pagerduty.disconnect",
    module="tasks.disconnect",
    queue=INTERACTIVE,
    kwargs=(
        CONNECTION_ID,
        Kwarg(
            "actor_member_id",
            "str | None",
            "The member who asked (audit; a UUID), or none.",
            default=None,
            check=optional_uuid_text,
        ),
    ),
    soft_time_limit=30,
    time_limit=60,
    # Its only transient failure is the database's, which the task base retries for every task
    # (a family of its own retried it a second time, with another backoff).
    family=Family.ONCE,
    max_retries=0,
    no_retry_because="its one transient failure, the database's, is retried as for every "
    "task: below",
    result="`{status, connection_id, rotations_made_manual, mirror_rows_deleted}`",
)
REVOKE_TOKENS = TaskSpec(
    name="pagerduty.revoke_tokens",
    module="tasks.disconnect",
    queue=INTERACTIVE,
    kwargs=(CONNECTION_ID,),
    soft_time_limit=10,
    time_limit=20,
    family=Family.ONCE,
    max_retries=0,
    result="`{connection_id, revoked: 0, reason}`",
    deprecated=True,
)
PING = TaskSpec(
    name="rrpd.ping",
    module="tasks.health",
    queue=INTERACTIVE,
    kwargs=(Kwarg("payload", "str", "Echoed back.", default="pong", check=short_text(1000)),),
    soft_time_limit=10,
    time_limit=20,
    family=Family.ONCE,
    max_retries=0,
    result="`{reply}`",
)

TASKS: tuple[TaskSpec, ...] = (
    VALIDATE_API_KEY,
    EXCHANGE_OAUTH_CODE,
    REFRESH_TOKEN,
    REFRESH_EXPIRING_TOKENS,
    SYNC_CONNECTION,
    CHECK_CONNECTIONS,
    SCHEDULE_SYNCS,
    DISCONNECT,
    REVOKE_TOKENS,
    PING,
)
BY_NAME: Mapping[str, TaskSpec] = {spec.name: spec for spec in TASKS}


def _check_table() -> None:
    """The rules docs/tasks.md promises, enforced where the table is declared."""
    for spec in TASKS:
        if not spec.name.startswith("pagerduty.") and spec.name != "rrpd.ping":
            raise AssertionError(f"{spec.name}: public names start with pagerduty.")
        if spec.queue not in QUEUES:
            raise AssertionError(f"{spec.name}: unknown queue {spec.queue}")
        if not spec.soft_time_limit < spec.time_limit <= TASK_TIME_LIMIT:
            raise AssertionError(f"{spec.name}: limits must be soft < hard <= {TASK_TIME_LIMIT}")
        if spec.max_retries and RETRY_POLICIES[spec.family] is None:
            raise AssertionError(f"{spec.name}: family {spec.family} does not retry")
        for kwarg in spec.kwargs:
            ids_only = kwarg.name.endswith("_id") or kwarg.name in ("kind", "generation")
            if not ids_only and any(word in kwarg.name for word in SECRET_WORDS):
                raise AssertionError(f"{spec.name}: {kwarg.name} looks like a secret")
            if kwarg.check is None:
                raise AssertionError(f"{spec.name}: {kwarg.name} has no check of its value")
    if len(BY_NAME) != len(TASKS):
        raise AssertionError("task names must be unique")


_check_table()


# --- derived configuration ---------------------------------------------------------------------


def task_routes() -> dict[str, dict[str, str]]:
    return {spec.name: {"queue": spec.queue} for spec in TASKS}


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    schedule: dict[str, dict[str, Any]] = {}
    for spec in TASKS:
        if spec.beat is not None:
            every = spec.beat.every(settings)
            schedule[spec.beat.entry] = {
                "task": spec.name,
                "schedule": every,
                # No ``expires``: a late round still runs (its claims are conditional updates,
                # so a round after it finds nothing twice). Beat's own rounds store no result
                # (nobody reads it); a round a service sends by name keeps its documented one.
                "options": {"queue": spec.queue, "ignore_result": True},
            }
    return schedule
