"""The /v1 endpoints. Each write is one transaction; tasks are published after it commits."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import AfterValidator, BaseModel

from api_stub.auth import WorkspaceActor, WorkspaceManager, workspace_manager
from api_stub.errors import ErrorResponse, read_json
from api_stub.oauth_browser import forget_login, remember_login, remembered_login
from api_stub.schemas import (
    ApiKeyRequest,
    BindAccepted,
    BindRequest,
    ConnectAccepted,
    ConnectionOut,
    DisconnectAccepted,
    OAuthStartOut,
    OAuthStartRequest,
    RotationList,
    RotationRef,
    SchedulePage,
    TaskAccepted,
    control_free,
)
from models import PagerDutyConnection
from workers.connections import account_change, oauth_login, pending, setup, status
from workers.connections.status import StatusOut, pending_document
from workers.core.access import Actor
from workers.core.db import snapshot, transaction
from workers.disconnect.request import request_disconnect
from workers.rotations import binding, schedules, views
from workers.sync.request import sync_now as request_sync_now

router = APIRouter(prefix="/v1")

M = TypeVar("M", bound=BaseModel)


def _err(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _err(
        "No token, or a bad or expired token (`unauthenticated`, `invalid_token`, "
        "`token_expired`, `unknown_member`)."
    ),
    403: _err("The token is for another workspace (`workspace_forbidden`)."),
    422: _err("A path or query parameter is invalid (`invalid_request`)."),
}
MANAGER_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    403: _err(
        "The token is for another workspace (`workspace_forbidden`) or the member is "
        "neither Primary Owner nor Admin (`role_forbidden`)."
    ),
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **MANAGER_ERRORS,
    413: _err("The body is larger than RRPD_API_MAX_BODY_BYTES (`payload_too_large`)."),
    415: _err("The body is not application/json (`unsupported_media_type`)."),
    422: _err(
        "The body is not valid JSON (`invalid_json`) or a field is missing or invalid "
        "(`invalid_request`, with `details`)."
    ),
}


def json_body(model: type[M]) -> Callable[..., Awaitable[M]]:
    """Parse ``model`` from the body after the caller is authorized (401/403 before 415/413/422)."""

    async def dependency(
        request: Request, _actor: Annotated[Actor, Depends(workspace_manager)]
    ) -> M:
        return await read_json(request, model)

    return dependency


def body_doc(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    }


def _connection_out(conn: PagerDutyConnection) -> ConnectionOut:
    return ConnectionOut(
        id=conn.id,
        status=conn.status,
        auth_method=conn.auth_method,
        region=conn.region,
        generation=conn.generation,
        status_changed_at=conn.status_changed_at,
    )


# --- connect / disconnect -----------------------------------------------------------------------


@router.put(
    "/workspaces/{workspace_id}/pagerduty/api-key",
    status_code=202,
    response_model=ConnectAccepted,
    summary="Connect with an API key, or replace the key",
    description="Stores the key encrypted, puts the connection in `validating` (creating it if "
    "there is none, otherwise bumping its generation) and enqueues "
    "`pagerduty.validate_api_key`. Over a `connected` connection the key is stored as its "
    "`pending` credential instead, checked while the live key keeps serving. Primary Owner or "
    "Admin.",
    tags=["pagerduty"],
    responses={**BODY_ERRORS, 409: _err("The connection is being disconnected (`disconnecting`).")},
    openapi_extra=body_doc(ApiKeyRequest),
)
def put_api_key(
    actor: WorkspaceManager,
    body: Annotated[ApiKeyRequest, Depends(json_body(ApiKeyRequest))],
) -> ConnectAccepted:
    with transaction() as session:
        done = setup.set_api_key(session, actor, body.api_key, body.region)
        waiting = pending_document(done.connection)
    return ConnectAccepted(
        connection=_connection_out(done.connection),
        task_id=done.task_id,
        pending=waiting,
    )


@router.post(
    "/workspaces/{workspace_id}/pagerduty/oauth",
    status_code=201,
    response_model=OAuthStartOut,
    summary="Start a PagerDuty OAuth login",
    description="Creates a single-use login (state stored as a SHA-256 hash, PKCE verifier and "
    "client secret encrypted) and returns PagerDuty's authorization URL. Primary Owner or "
    "Admin.",
    tags=["pagerduty"],
    responses={
        **BODY_ERRORS,
        409: _err(
            "The connection is being disconnected (`disconnecting`), or `client_id` and "
            "`client_secret` were omitted with no OAuth app stored (`no_stored_oauth_app`)."
        ),
    },
    openapi_extra=body_doc(OAuthStartRequest),
)
def start_oauth(
    actor: WorkspaceManager,
    body: Annotated[OAuthStartRequest, Depends(json_body(OAuthStartRequest))],
    response: Response,
) -> OAuthStartOut:
    with transaction() as session:
        start = oauth_login.start_oauth(
            session, actor, body.client_id, body.client_secret, body.region
        )
    # A browser calling us keeps the login (PagerDuty may send no state back); others ignore it.
    remember_login(response, start.state)
    return OAuthStartOut(authorization_url=start.authorization_url, expires_at=start.expires_at)


@router.get(
    "/pagerduty/oauth/callback",
    status_code=303,
    response_class=RedirectResponse,
    summary="PagerDuty sends the browser back here",
    description="No bearer token: the single-use, unexpired `state` authenticates the request; "
    "without `state` (PagerDuty documents none), the login this browser started, from the "
    "`rrpd_oauth_login` cookie set when it started. "
    "Always answers 303 to the integrations page with `pagerduty=connecting&task_id=...`, "
    "`pagerduty=denied`, or `pagerduty=error&reason=...` (`state_missing`, `state_invalid`, "
    "`state_expired`, `missing_code`, `invalid_code`, `forbidden`, `disconnecting`, an RFC 6749 "
    "error code, or `authorization_failed`).",
    tags=["pagerduty"],
    responses={303: {"description": "Redirect to the integrations page."}},
)
def oauth_callback(
    request: Request,
    state: str | None = None,
    code: str | None = None,
    error: str | None = None,
) -> RedirectResponse:
    remembered = remembered_login(request)
    with transaction() as session:
        outcome = oauth_login.handle_oauth_callback(
            session, state=state, code=code, error=error, remembered_state=remembered
        )
    response = RedirectResponse(
        outcome.redirect_url(),
        status_code=303,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
    if remembered and (not state or state == remembered):
        forget_login(response)  # its login is consumed (or gone); another tab's stays
    return response


@router.get(
    "/workspaces/{workspace_id}/pagerduty",
    response_model=StatusOut,
    summary="The workspace's PagerDuty connection",
    description="Status in plain words, account, who connected and when, the last sync and "
    "how many PagerDuty users are linked to members. `status` is `not_connected` (200) when "
    "there is no live connection. Any member of the workspace.",
    tags=["pagerduty"],
    responses=AUTH_ERRORS,
)
def get_status(actor: WorkspaceActor) -> StatusOut:
    with snapshot() as session:
        return status.connection_status(session, actor.workspace_id)


@router.delete(
    "/workspaces/{workspace_id}/pagerduty",
    status_code=202,
    response_model=DisconnectAccepted,
    summary="Disconnect PagerDuty",
    description="Moves the live connection to `disconnecting` and enqueues "
    "`pagerduty.disconnect` (which reverts bound rotations to Manual). The answer lists those "
    "rotations and says how to revoke the credential in PagerDuty (PagerDuty has no API for "
    "it). Calling it again while disconnecting answers 202 again. Primary Owner or Admin.",
    tags=["pagerduty"],
    responses={**MANAGER_ERRORS, 404: _err("There is no live connection (`not_connected`).")},
)
def delete_connection(actor: WorkspaceManager) -> DisconnectAccepted:
    with transaction() as session:
        done = request_disconnect(session, actor)
        connection = _connection_out(done.connection)
    return DisconnectAccepted(
        connection=connection,
        task_id=done.task_id,
        rotations_to_manual=[RotationRef(**r) for r in done.rotations_to_manual],
        revoke_in_pagerduty=done.revoke_instructions,
    )


@router.delete(
    "/workspaces/{workspace_id}/pagerduty/pending",
    response_model=StatusOut,
    summary="Discard the new credential waiting beside the live one",
    description="Forgets the pending credential (its key, and its outcome: checking, rejected, "
    "lost or account_change); the live connection is not touched. Answers the status "
    "document. Primary Owner or Admin.",
    tags=["pagerduty"],
    responses={**MANAGER_ERRORS, 404: _err("No credential is pending (`no_pending`).")},
)
def discard_pending(actor: WorkspaceManager) -> StatusOut:
    with transaction() as session:
        pending.discard(session, actor)
        return status.connection_status(session, actor.workspace_id)


@router.post(
    "/workspaces/{workspace_id}/pagerduty/pending/confirm",
    response_model=StatusOut,
    summary="Switch to the new key's PagerDuty account",
    description="Confirms a pending key of another PagerDuty account (`pending.status = "
    "account_change`): in one transaction it replaces the live credentials, every bound "
    "rotation whose schedule is not in the new account becomes Manual (the others stay bound), "
    "and a sync starts. Answers the status document. Primary Owner or Admin.",
    tags=["pagerduty"],
    responses={
        **MANAGER_ERRORS,
        404: _err("No credential is pending (`no_pending`)."),
        409: _err(
            "The pending credential is not an account change (`not_account_change`), or the "
            "connection is not connected (`disconnecting`, `connection_not_ready`)."
        ),
    },
)
def confirm_account_change(actor: WorkspaceManager) -> StatusOut:
    with transaction() as session:
        account_change.confirm(session, actor)
        return status.connection_status(session, actor.workspace_id)


@router.post(
    "/workspaces/{workspace_id}/pagerduty/sync",
    status_code=202,
    response_model=TaskAccepted,
    summary="Sync now",
    description="Enqueues `pagerduty.sync_connection` with kind `manual`. Primary Owner or Admin.",
    tags=["pagerduty"],
    responses={
        **MANAGER_ERRORS,
        409: _err(
            "No live connection (`not_connected`) or it is not `connected` "
            "(`connection_not_ready`)."
        ),
    },
)
def sync_now(actor: WorkspaceManager) -> TaskAccepted:
    with transaction() as session:
        done = request_sync_now(session, actor)
    return TaskAccepted(task_id=done.task_id)


@router.get(
    "/workspaces/{workspace_id}/pagerduty/schedules",
    response_model=SchedulePage,
    summary="Search mirrored PagerDuty schedules",
    description="Schedules of the live connection whose name contains `query` (any case), "
    "with their member counts, ordered by name. Empty when not connected. Any member.",
    tags=["pagerduty"],
    responses=AUTH_ERRORS,
)
def list_schedules(
    actor: WorkspaceActor,
    query: Annotated[
        str | None, Query(max_length=200), AfterValidator(control_free("query"))
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> SchedulePage:
    with transaction() as session:
        items, total = schedules.search_schedules(
            session, actor.workspace_id, query, limit=limit, offset=offset
        )
    return SchedulePage.model_validate(
        {"items": items, "total": total, "limit": limit, "offset": offset}
    )


# --- rotations ----------------------------------------------------------------------------------


@router.get(
    "/workspaces/{workspace_id}/rotations",
    response_model=RotationList,
    summary="Rotations with their members, who is on duty and unmatched PagerDuty people",
    tags=["rotations"],
    responses=AUTH_ERRORS,
)
def list_rotations(actor: WorkspaceActor) -> RotationList:
    with transaction() as session:
        rotations = views.list_rotations(session, actor.workspace_id)
    return RotationList(rotations=rotations)


@router.put(
    "/workspaces/{workspace_id}/rotations/{rotation_id}/pagerduty-schedule",
    status_code=202,
    response_model=BindAccepted,
    summary="Bind a rotation to PagerDuty schedules",
    description='`{"schedule_id": ...}` (one schedule) or `{"schedule_ids": [...]}` (1 to '
    "10 distinct; both keys: 400 `schedule_id_or_schedule_ids`; more than 10: 422 "
    "`too_many_schedules`; repeated: 422 `duplicate_schedule_ids`). Re-binding replaces the "
    "set. Each schedule must be mirrored from the live, connected account. Enqueues "
    "`pagerduty.sync_connection` with kind `binding`, which fills members and on-duty people. "
    "Primary Owner or Admin.",
    tags=["rotations"],
    responses={
        **BODY_ERRORS,
        404: _err(
            "Unknown rotation (`rotation_not_found`) or schedule (`schedule_not_found`, naming "
            "the unknown ids when several were given)."
        ),
        409: _err(
            "No live connection (`not_connected`) or it is not `connected` "
            "(`connection_not_ready`)."
        ),
    },
    openapi_extra=body_doc(BindRequest),
)
def bind_rotation(
    rotation_id: uuid.UUID,
    actor: WorkspaceManager,
    body: Annotated[BindRequest, Depends(json_body(BindRequest))],
) -> BindAccepted:
    with transaction() as session:
        bound = binding.bind_rotation(session, actor, rotation_id, body.wanted())
        view = views.rotation_view(session, actor.workspace_id, rotation_id)
    return BindAccepted(rotation=view, task_id=bound.task_id)


@router.delete(
    "/workspaces/{workspace_id}/rotations/{rotation_id}/pagerduty-schedule",
    response_model=views.RotationOut,
    summary="Make a rotation Manual again",
    description="Keeps its members and who is on duty. Already manual: 200, nothing changes. "
    "Primary Owner or Admin.",
    tags=["rotations"],
    responses={**MANAGER_ERRORS, 404: _err("Unknown rotation (`rotation_not_found`).")},
)
def unbind_rotation(rotation_id: uuid.UUID, actor: WorkspaceManager) -> views.RotationOut:
    with transaction() as session:
        binding.unbind_rotation(session, actor, rotation_id)
        return views.rotation_view(session, actor.workspace_id, rotation_id)
