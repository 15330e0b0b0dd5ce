"""A user's sessions: list and revoke your own, and the admin view of anyone's."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .auth import require_admin
from .bodies import read_body
from .errors import ApiError, ok
from .models import RevokeBody
from .routes import _hub, _settings, current_session, fresh_session


def admin_only(request: Request) -> None:
    """401/403 unless the request carries one of ``ADMIN.API_KEYS``."""
    require_admin(request, [k.get_secret_value() for k in _settings(request).admin.api_keys])


def _not_found() -> ApiError:
    return ApiError(404, "session_not_found", "no such session for this user")


async def my_sessions(request: Request) -> Response:
    session = await current_session(request)
    assert session.user_id is not None
    infos = await _hub(request).run(_hub(request).manager.user_sessions_list(session.user_id))
    return ok({"sessions": [i.view(session.storage_id) for i in infos]})


async def revoke_my_session(request: Request) -> Response:
    session = await fresh_session(request)
    assert session.user_id is not None
    hub = _hub(request)
    handle = request.path_params["handle"]
    if not await hub.run(hub.manager.revoke_user_session(session.user_id, handle)):
        raise _not_found()
    return ok({"revoked": 1})


async def revoke_other_sessions(request: Request) -> Response:
    session = await fresh_session(request)
    assert session.user_id is not None
    hub = _hub(request)
    revoked = await hub.run(
        hub.manager.revoke_user_sessions(session.user_id, keep_storage_id=session.storage_id)
    )
    return ok({"revoked": revoked})


async def user_sessions(request: Request) -> Response:
    admin_only(request)
    hub = _hub(request)
    infos = await hub.run(hub.manager.user_sessions_list(request.path_params["user_id"]))
    return ok({"sessions": [i.view() for i in infos]})


async def revoke_user_sessions(request: Request) -> Response:
    admin_only(request)
    hub = _hub(request)
    user_id = request.path_params["user_id"]
    revoked = await hub.run(hub.manager.revoke_user_sessions(user_id, reason="admin"))
    return ok({"revoked": revoked})


async def revoke_user_session(request: Request) -> Response:
    admin_only(request)
    hub = _hub(request)
    op = hub.manager.revoke_user_session(
        request.path_params["user_id"], request.path_params["handle"], reason="admin"
    )
    if not await hub.run(op):
        raise _not_found()
    return ok({"revoked": 1})


async def admin_revoke_user(request: Request) -> Response:
    """Disable a user's sessions at once (V7.4.2, V7.4.5), on every instance."""
    admin_only(request)
    body = await read_body(request, RevokeBody)
    hub = _hub(request)
    revoked = await hub.revoke_all(request.path_params["user_id"], body.reason)
    return ok({"revoked": revoked, "reason": body.reason})


routes = [
    Route("/api/me/sessions", my_sessions, methods=["GET"]),
    Route("/api/me/sessions/revoke-others", revoke_other_sessions, methods=["POST"]),
    Route("/api/me/sessions/{handle}", revoke_my_session, methods=["DELETE"]),
    Route("/api/users/{user_id}/sessions", user_sessions, methods=["GET"]),
    Route("/api/users/{user_id}/sessions", revoke_user_sessions, methods=["DELETE"]),
    Route("/api/users/{user_id}/sessions/{handle}", revoke_user_session, methods=["DELETE"]),
    Route("/api/admin/users/{user_id}/revoke", admin_revoke_user, methods=["POST"]),
]
