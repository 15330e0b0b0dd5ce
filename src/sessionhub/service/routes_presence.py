"""Presence: heartbeat, online count and list, one user's status, daily unique users."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..presence import day_of
from .bodies import read_query
from .errors import ApiError, ok
from .models import DailyQuery, OnlineUsersQuery
from .routes import _hub, current_session
from .routes_users import admin_only


async def caller(request: Request) -> str | None:
    """The logged-in user, or ``None`` for a valid admin key; 401/403 for anyone else."""
    if "authorization" in request.headers:
        admin_only(request)
        return None
    session = await current_session(request)
    return session.user_id


async def heartbeat(request: Request) -> Response:
    session = await current_session(request)
    assert session.user_id is not None
    await _hub(request).presence.touch(session.user_id, session.storage_id, force=True)
    return ok(await _hub(request).presence.status(session.user_id))


async def online(request: Request) -> Response:
    await caller(request)
    data = await _hub(request).presence.online_count()
    return ok(data)


async def online_users(request: Request) -> Response:
    await caller(request)
    q = read_query(request, OnlineUsersQuery)
    try:
        page = await _hub(request).presence.online_users(q.cursor, q.limit)
    except ValueError as exc:
        raise ApiError(422, "validation_error", f"query parameter 'cursor': {exc}") from exc
    return ok(page)


async def user_presence(request: Request) -> Response:
    user_id = request.path_params["user_id"]
    if await caller(request) not in (None, user_id):
        raise ApiError(403, "forbidden", "only your own presence, or with the admin key")
    return ok(await _hub(request).presence.status(user_id))


async def daily(request: Request) -> Response:
    await caller(request)
    hub = _hub(request)
    day = read_query(request, DailyQuery).date or day_of(hub.manager.core.clock())
    return ok(await hub.presence.daily(day))


routes = [
    Route("/api/presence/heartbeat", heartbeat, methods=["POST"]),
    Route("/api/presence/online", online, methods=["GET"]),
    Route("/api/presence/online/users", online_users, methods=["GET"]),
    Route("/api/presence/daily", daily, methods=["GET"]),
    Route("/api/users/{user_id}/presence", user_presence, methods=["GET"]),
]
