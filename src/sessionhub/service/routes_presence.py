"""Presence: heartbeat, online count and list, one user's status, daily unique users."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..presence import day_of
from .errors import ApiError, ok
from .routes import _hub, current_session
from .routes_users import admin_only

MAX_PAGE = 1000
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


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
    await _hub(request).presence.touch(session.user_id, session.sid, force=True)
    return ok(await _hub(request).presence.status(session.user_id))


async def online(request: Request) -> Response:
    await caller(request)
    data = await _hub(request).presence.online_count()
    return ok(data)


async def online_users(request: Request) -> Response:
    await caller(request)
    limit_raw = request.query_params.get("limit", "100")
    if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= MAX_PAGE:
        raise ApiError(422, "validation_error", f"'limit' must be an integer 1..{MAX_PAGE}")
    try:
        page = await _hub(request).presence.online_users(
            request.query_params.get("cursor") or None, int(limit_raw)
        )
    except ValueError as exc:
        raise ApiError(422, "validation_error", f"'cursor': {exc}") from exc
    return ok(page)


async def user_presence(request: Request) -> Response:
    user_id = request.path_params["user_id"]
    if await caller(request) not in (None, user_id):
        raise ApiError(403, "forbidden", "only your own presence, or with the admin key")
    return ok(await _hub(request).presence.status(user_id))


async def daily(request: Request) -> Response:
    await caller(request)
    hub = _hub(request)
    day = request.query_params.get("date") or day_of(hub.manager.core.clock())
    if not _DATE.fullmatch(day):
        raise ApiError(422, "validation_error", "'date' must be YYYY-MM-DD")
    return ok(await hub.presence.daily(day))


routes = [
    Route("/api/presence/heartbeat", heartbeat, methods=["POST"]),
    Route("/api/presence/online", online, methods=["GET"]),
    Route("/api/presence/online/users", online_users, methods=["GET"]),
    Route("/api/presence/daily", daily, methods=["GET"]),
    Route("/api/users/{user_id}/presence", user_presence, methods=["GET"]),
]
