"""Bearer JWTs (HS256, shared secret with the Round Robin app) and the workspace/role checks.

Claims: ``sub`` (member id), ``workspace_id``, ``role`` and ``exp`` are all required. The member
must exist in that workspace; the effective role is the lower of the token's and the stored one.
"""

from __future__ import annotations

import hmac
import time
import uuid
from typing import Annotated

from fastapi import Depends, Path, Request
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import OctKey

from api_stub.errors import ApiError
from models import Role
from workers.core.access import Actor, resolve_actor
from workers.core.db import transaction
from workers.core.settings import get_settings

ALGORITHM = "HS256"
LEEWAY_SECONDS = 5
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="rrpd"'}
STRING_CLAIMS = ("sub", "workspace_id", "role")


def _key() -> OctKey:
    return OctKey.import_key(get_settings().jwt_secret())


def issue_token(
    workspace_id: uuid.UUID | str,
    member_id: uuid.UUID | str,
    role: str,
    *,
    ttl_seconds: int | None = None,
    now: float | None = None,
    nonce: str | None = None,
) -> str:
    """A token as the Round Robin app would issue it (``rrpd token`` and tests use this).

    ``nonce``: the panel's login nonce, for a token that signs a browser in to the panel.
    """
    issued = int(now if now is not None else time.time())
    ttl = ttl_seconds if ttl_seconds is not None else get_settings().api_jwt_ttl_seconds
    claims: dict[str, object] = {
        "sub": str(member_id),
        "workspace_id": str(workspace_id),
        "role": str(role),
        "iat": issued,
        "exp": issued + ttl,
    }
    if nonce is not None:
        claims["nonce"] = nonce
    return jwt.encode({"alg": ALGORITHM}, claims, _key(), algorithms=[ALGORITHM])


def _unauthenticated(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, headers=_CHALLENGE)


def verify_token(token: str) -> tuple[uuid.UUID, uuid.UUID, Role]:
    """(workspace_id, member_id, role) from a valid token, or a 401 ``ApiError``."""
    workspace_id, member_id, role, _ = _verified(token)
    return workspace_id, member_id, role


def verify_login_token(token: str, expected_nonce: str | None) -> tuple[uuid.UUID, uuid.UUID, Role]:
    """As ``verify_token``, for a token that signs a browser in to the panel: its ``nonce``
    claim must be the one this browser's login cookie stands for (no login CSRF)."""
    workspace_id, member_id, role, claims = _verified(token)
    nonce = claims.get("nonce")
    if (
        not expected_nonce
        or not isinstance(nonce, str)
        or not hmac.compare_digest(nonce.encode(), expected_nonce.encode())
    ):
        raise _unauthenticated(
            "login_nonce_mismatch",
            "This sign-in link was not started in this browser. Open the integrations panel "
            "from the Round Robin app again.",
        )
    return workspace_id, member_id, role


def _verified(token: str) -> tuple[uuid.UUID, uuid.UUID, Role, dict[str, object]]:
    try:
        decoded = jwt.decode(token, _key(), algorithms=[ALGORITHM])
    except (JoseError, ValueError, TypeError):
        raise _unauthenticated("invalid_token", "The access token is not valid.") from None
    # Types first: joserfc accepts a list where a value list is given (role: ["admin"] passes
    # its check), and anything but a string here is a malformed token, not a server error.
    for claim in STRING_CLAIMS:
        value = decoded.claims.get(claim)
        if value is not None and not isinstance(value, str):
            raise _unauthenticated(
                "invalid_token", f"The access token's {claim} claim must be a string."
            )
    registry = jwt.JWTClaimsRegistry(
        leeway=LEEWAY_SECONDS,
        exp={"essential": True},
        sub={"essential": True},
        workspace_id={"essential": True},
        role={"essential": True, "values": [r.value for r in Role]},
    )
    try:
        registry.validate(decoded.claims)
    except ExpiredTokenError:
        raise _unauthenticated("token_expired", "The access token has expired.") from None
    except JoseError:
        raise _unauthenticated(
            "invalid_token", "The access token lacks a required claim or has a bad value."
        ) from None
    try:
        member_id = uuid.UUID(decoded.claims["sub"])
        workspace_id = uuid.UUID(decoded.claims["workspace_id"])
    except ValueError:
        raise _unauthenticated(
            "invalid_token", "The access token's sub and workspace_id claims must be UUIDs."
        ) from None
    return workspace_id, member_id, Role(decoded.claims["role"]), dict(decoded.claims)


def authenticate(request: Request) -> Actor:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise _unauthenticated("unauthenticated", "Send a bearer token in Authorization.")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthenticated("invalid_token", "Authorization must be 'Bearer <token>'.")
    workspace_id, member_id, role = verify_token(token.strip())
    with transaction() as session:
        actor = resolve_actor(session, workspace_id, member_id, role)
    if actor is None:
        raise _unauthenticated(
            "unknown_member", "The token's member does not belong to its workspace."
        )
    return actor


def workspace_actor(
    workspace_id: Annotated[uuid.UUID, Path(description="The Round Robin workspace id.")],
    actor: Annotated[Actor, Depends(authenticate)],
) -> Actor:
    """The caller, who must belong to the workspace in the path (403 otherwise)."""
    if actor.workspace_id != workspace_id:
        raise ApiError(403, "workspace_forbidden", "This token is not valid for that workspace.")
    return actor


def workspace_manager(actor: Annotated[Actor, Depends(workspace_actor)]) -> Actor:
    if not actor.may_manage:
        raise ApiError(
            403,
            "role_forbidden",
            "Only the workspace's Primary Owner or an Admin can do this.",
        )
    return actor


CurrentActor = Annotated[Actor, Depends(authenticate)]
WorkspaceActor = Annotated[Actor, Depends(workspace_actor)]
WorkspaceManager = Annotated[Actor, Depends(workspace_manager)]
