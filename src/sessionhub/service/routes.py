"""The endpoints of the seed: login, logout, me, extend, stats and Redis health."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..config import Settings
from ..config import redacted as redacted_config
from ..exceptions import InvalidTokenError, TooManyAttemptsError
from ..hub import AsyncSessionHub
from ..session import Session
from ..timefmt import iso
from .auth import PasswordChecker, require_admin
from .bodies import read_body
from .counts import Counts
from .errors import ApiError, JSONResponse, error_response, ok
from .models import LoginBody
from .monitor import Monitor, RedisInfo


def session_view(session: Session) -> dict[str, Any]:
    """What a client may see of its own session."""
    r = session.record
    return {
        "user_id": r.user_id,
        "created_at": iso(r.created_ms),
        "last_seen_at": iso(r.last_seen_ms),
        "expires_at": iso(r.expires_ms),
        "absolute_expires_at": iso(r.hard_expires_ms),
    }


def _hub(request: Request) -> AsyncSessionHub:
    hub: AsyncSessionHub = request.app.state.hub
    return hub


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


async def current_session(request: Request, *, touch: bool = True, force: bool = False) -> Session:
    """The caller's live session (``force``: slide its expiry now); 401 with the reason if none."""
    cookie = request.cookies.get(_settings(request).session.cookie_name)
    if not cookie:
        raise ApiError(401, "not_authenticated", "no session cookie; log in first")
    hub = _hub(request)
    try:
        session = await hub.open(cookie, touch=touch, force=force)
    except InvalidTokenError as exc:
        raise ApiError(401, "invalid_session", f"{exc}; log in again") from exc
    if session is None or session.user_id is None:
        raise ApiError(401, "session_expired", "the session has expired or was logged out")
    # Every authenticated request is activity (throttled per session, usually no I/O).
    await hub.presence.touch(session.user_id, session.sid)
    return session


def set_session_cookie(request: Request, response: Response, cookie: str, session: Session) -> None:
    ss = _settings(request).session
    max_age = None
    if ss.permanent:
        max_age = max(0, (session.record.hard_expires_ms - session.record.created_ms) // 1000)
    response.set_cookie(
        ss.cookie_name,
        cookie,
        max_age=max_age,
        **ss.cookie_attributes(),
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    ss = _settings(request).session
    response.delete_cookie(
        ss.cookie_name,
        **ss.cookie_attributes(),
    )


async def login(request: Request) -> Response:
    settings = _settings(request)
    body = await read_body(request, LoginBody)
    username, password = body.username, body.password
    hub = _hub(request)
    ip = client_ip(request)
    counts: Counts = request.app.state.counts
    try:
        await hub.login_attempts.attempt(username, ip)
    except TooManyAttemptsError as exc:
        counts.login("throttled")
        response = error_response(429, "too_many_attempts", str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    checker: PasswordChecker = request.app.state.passwords
    if not await run_in_threadpool(checker.check, username, password):
        counts.login("invalid")
        raise ApiError(401, "invalid_credentials", "wrong username or password")
    await hub.login_attempts.succeeded(username, ip)
    previous = None
    old_cookie = request.cookies.get(settings.session.cookie_name)
    if old_cookie:
        try:
            previous = await hub.open(old_cookie, touch=False)
        except InvalidTokenError:
            previous = None
    # A login never reuses the presented token: it always issues a new one (fixation).
    session, cookie = await hub.login(
        username,
        previous=previous,
        user_agent=request.headers.get("user-agent", ""),
        ip=ip,
    )
    await hub.presence.touch(username, session.sid, force=True)
    counts.login("ok")
    response = ok({"user_id": username, "expires_at": iso(session.record.expires_ms)})
    set_session_cookie(request, response, cookie, session)
    return response


async def logout(request: Request) -> Response:
    cookie = request.cookies.get(_settings(request).session.cookie_name)
    logged_out = False
    if cookie:
        hub = _hub(request)
        try:
            sid = hub.manager.sid_for_cookie(cookie)
            leaving = await hub.open(cookie, touch=False)
            logged_out = await hub.destroy(sid)
        except InvalidTokenError:
            logged_out = False
        else:
            hub.features.presence.forget_session(sid)
            if leaving is not None and leaving.user_id is not None:
                # Still online while another device is; offline once the last one logs out.
                left = await hub.user_sessions.list(leaving.user_id)
                if not left:
                    await hub.presence.offline(leaving.user_id)
    response = ok({"logged_out": logged_out})
    clear_session_cookie(request, response)
    return response


async def me(request: Request) -> Response:
    return ok(session_view(await current_session(request)))


async def extend(request: Request) -> Response:
    # One round trip: the load itself slides the expiry, within the absolute lifetime.
    return ok(session_view(await current_session(request, force=True)))


def _redis_info(request: Request) -> RedisInfo | None:
    monitor: Monitor = request.app.state.monitor
    return monitor.redis_info


async def stats(request: Request) -> Response:
    return ok({**await _hub(request).stats(), "redis_info": _redis_info(request)})


async def redis_health(request: Request) -> Response:
    data = await _hub(request).health()
    return JSONResponse(
        {"success": True, "data": {**data, "redis_info": _redis_info(request)}},
        status_code=200 if data["status"] == "healthy" else 503,
    )


async def healthz(request: Request) -> Response:
    return ok({"status": "ok"})


async def admin_config(request: Request) -> Response:
    settings = _settings(request)
    require_admin(request, [k.get_secret_value() for k in settings.admin.api_keys])
    return ok(redacted_config(settings))


routes = [
    Route("/api/auth/login", login, methods=["POST"]),
    Route("/api/auth/logout", logout, methods=["POST"]),
    Route("/api/auth/me", me, methods=["GET"]),
    Route("/api/session/extend", extend, methods=["POST"]),
    Route("/api/session/stats", stats, methods=["GET"]),
    Route("/api/health/redis", redis_health, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/api/admin/config", admin_config, methods=["GET"]),
]
