"""The endpoints of the seed: login, logout, me, extend, stats and Redis health."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..config import SessionSettings, Settings
from ..config import redacted as redacted_config
from ..exceptions import InvalidTokenError, TooManyAttemptsError
from ..hub import AsyncSessionHub
from ..integrations.asgi import cookie_header
from ..integrations.base import CookieAction
from ..session import Session
from ..timefmt import iso
from ..usersessions import session_times
from .auth import PasswordChecker, require_admin
from .bodies import read_body
from .counts import Counts
from .errors import ApiError, JSONResponse, ok, too_many
from .models import LoginBody, ReauthBody
from .monitor import Monitor, RedisInfo

PASSWORD_LEVEL = "password"  # noqa: S105 - a level's name, not a password
"""The service checks passwords only: the level its logins record."""


def session_view(session: Session) -> dict[str, Any]:
    """What a client may see of its own session."""
    r = session.record
    # Added to session_times' own dict: merging it into a new one cost about 1,800 instructions
    # more per view (callgrind), and every authenticated request of the service answers with one.
    view: dict[str, Any] = session_times(r)
    view["user_id"] = r.user_id
    view["absolute_expires_at"] = iso(r.absolute_expires_ms)
    return view


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
    if session.reissued_cookie is not None:
        carrier = Response()
        set_session_cookie(request, carrier, session.reissued_cookie, session)
        request.state.reissued_cookie = carrier.headers["set-cookie"]
    # Every authenticated request is activity (throttled per session, usually no I/O).
    await hub.presence.touch(session.user_id, session.storage_id)
    return session


def set_session_cookie(request: Request, response: Response, cookie: str, session: Session) -> None:
    ss = _settings(request).session
    max_age = None
    # A remembered session's cookie outlives the browser, or remembering would mean nothing.
    if ss.permanent or session.record.remember:
        max_age = max(0, (session.record.absolute_expires_ms - session.record.created_ms) // 1000)
    _write_cookie(response, ss, CookieAction(set_value=cookie, max_age=max_age))


def clear_session_cookie(request: Request, response: Response) -> None:
    _write_cookie(response, _settings(request).session, CookieAction(clear=True))


def _write_cookie(response: Response, ss: SessionSettings, action: CookieAction) -> None:
    # Starlette's set_cookie refuses Partitioned before Python 3.14 (http.cookies lacks it): the
    # ASGI adapter's header builder writes every attribute itself, the same way for both.
    header = cookie_header(ss, action, starlette_spelling=False)
    assert header is not None  # an action that sets or clears always has one
    response.raw_headers.append((b"set-cookie", header))


async def refused_attempt(hub: AsyncSessionHub, name: str, ip: str) -> Response | None:
    """Count a login attempt under ``name`` from ``ip``; the 429 to answer if over the limit."""
    try:
        await hub.login_attempts.attempt(name, ip)
    except TooManyAttemptsError as exc:
        return too_many("too_many_attempts", exc)
    return None


async def check_password(request: Request, username: str, password: str) -> Response | None:
    """``None`` when the password is right; a 429 when the address is locked out. A wrong
    password raises 401. Throttled like every login, so re-authentication is no side door."""
    hub = _hub(request)
    ip = client_ip(request)
    refused = await refused_attempt(hub, username, ip)
    if refused is not None:
        return refused
    checker: PasswordChecker = request.app.state.passwords
    if not await run_in_threadpool(checker.check, username, password):
        raise ApiError(401, "invalid_credentials", "wrong username or password")
    await hub.login_attempts.succeeded(username, ip)
    return None


async def login(request: Request) -> Response:
    settings = _settings(request)
    body = await read_body(request, LoginBody)
    username = body.username
    hub = _hub(request)
    ip = client_ip(request)
    counts: Counts = request.app.state.counts
    try:
        refused = await check_password(request, username, body.password)
    except ApiError:
        counts.login("invalid")
        raise
    if refused is not None:
        counts.login("throttled")
        return refused
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
        remember=body.remember,
        auth_level=PASSWORD_LEVEL,
    )
    await hub.presence.touch(username, session.storage_id, force=True)
    await hub.dashboard.record_login()
    counts.login("ok")
    response = ok({"user_id": username, "expires_at": iso(session.record.expires_ms)})
    set_session_cookie(request, response, cookie, session)
    return response


async def reauthenticate(request: Request) -> Response:
    """The password again: a new token for the same session and data, authenticated now."""
    session = await current_session(request, touch=False)
    assert session.user_id is not None
    body = await read_body(request, ReauthBody)
    refused = await check_password(request, session.user_id, body.password)
    if refused is not None:
        return refused
    fresh, cookie = await _hub(request).reauthenticate(session, level=PASSWORD_LEVEL)
    response = ok(session_view(fresh))
    set_session_cookie(request, response, cookie, fresh)
    return response


async def fresh_session(request: Request) -> Session:
    """:func:`current_session` whose login is within ``AUTH.REAUTH_MAX_AGE`` (V7.5); else 401
    ``reauth_required`` (:class:`~sessionhub.exceptions.ReauthRequiredError`)."""
    session = await current_session(request, touch=False)
    _hub(request).require_fresh(session, _settings(request).auth.reauth_max_age)
    return session


async def logout(request: Request) -> Response:
    cookie = request.cookies.get(_settings(request).session.cookie_name)
    logged_out = False
    if cookie:
        hub = _hub(request)
        try:
            storage_id = hub.manager.storage_id_for_cookie(cookie)
            leaving = await hub.open(cookie, touch=False)
            logged_out = await hub.destroy(storage_id, reason="logout")
        except InvalidTokenError:
            logged_out = False
        else:
            hub.features.presence.forget_session(storage_id)
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
    Route("/api/auth/reauthenticate", reauthenticate, methods=["POST"]),
    Route("/api/auth/me", me, methods=["GET"]),
    Route("/api/session/extend", extend, methods=["POST"]),
    Route("/api/session/stats", stats, methods=["GET"]),
    Route("/api/health/redis", redis_health, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/api/admin/config", admin_config, methods=["GET"]),
]
