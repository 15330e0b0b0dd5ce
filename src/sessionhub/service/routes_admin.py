"""The operator's JSON API under ``/api/admin/``: the admin page's login and its figures.

Every endpoint takes the admin key as ``Authorization: Bearer <key>`` or as the cookie that
``POST /api/admin/login`` trades it for. That cookie is HttpOnly (scripts never see it) and
SameSite=Strict (no other site's page can make the browser send it); on top of that every
endpoint that changes something takes only a JSON body or the DELETE method, which no HTML form
of another site can send, and the service answers no CORS preflight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..hub import AsyncSessionHub
from .auth import ADMIN_COOKIE, ADMIN_COOKIE_SECONDS, admin_cookie, admin_key_valid
from .bodies import read_body
from .errors import ApiError, ok
from .models import AdminLoginBody
from .routes import _hub, _settings, client_ip, refused_attempt
from .routes_users import admin_only, revoke_user_session, revoke_user_sessions, user_sessions

log = logging.getLogger("sessionhub.service")

ADMIN_LOGIN = "admin:page"
"""The name admin logins are throttled under (AUTH.MAX_ATTEMPTS), per client address."""
COOKIE_PATH = "/api"
SAMPLE_SECONDS = 60.0
"""How often the service notes the session count for the chart, whether or not anyone watches."""


async def admin_login(request: Request) -> Response:
    body = await read_body(request, AdminLoginBody)
    hub, ip = _hub(request), client_ip(request)
    refused = await refused_attempt(hub, ADMIN_LOGIN, ip)
    if refused is not None:
        return refused
    settings = _settings(request)
    if not admin_key_valid(body.key, [k.get_secret_value() for k in settings.admin.api_keys]):
        raise ApiError(403, "admin_key_invalid", "the admin key is not valid")
    await hub.login_attempts.succeeded(ADMIN_LOGIN, ip)
    response = ok({"logged_in": True, "expires_in": ADMIN_COOKIE_SECONDS})
    response.set_cookie(
        ADMIN_COOKIE,
        admin_cookie(body.key),
        max_age=ADMIN_COOKIE_SECONDS,
        path=COOKIE_PATH,
        secure=settings.session.cookie_secure,
        httponly=True,
        samesite="strict",
    )
    return response


async def admin_logout(request: Request) -> Response:
    response = ok({"logged_out": True})
    secure = _settings(request).session.cookie_secure
    response.delete_cookie(
        ADMIN_COOKIE, path=COOKIE_PATH, secure=secure, httponly=True, samesite="strict"
    )
    return response


async def overview(request: Request) -> Response:
    admin_only(request)
    return ok(await _hub(request).dashboard.overview())


async def sample_sessions(hub: AsyncSessionHub, stop: asyncio.Event) -> None:
    """Note the session count every minute for the chart, until ``stop`` is set."""
    while not stop.is_set():
        try:
            await hub.dashboard.sample()
        except Exception:  # a failed sample leaves a gap in the chart, nothing worse
            log.debug("activity sample failed", exc_info=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)


@contextlib.asynccontextmanager
async def sampling(hub: AsyncSessionHub) -> AsyncIterator[None]:
    """Run :func:`sample_sessions` for the lifetime of the service."""
    stop = asyncio.Event()
    task = asyncio.create_task(sample_sessions(hub, stop), name="sessionhub-activity-sample")
    try:
        yield
    finally:
        # A flag as well as cancel(), as for the hub's maintenance: a cancel that lands as a
        # sample's socket timeout fires can surface as a Redis TimeoutError (seen on Cluster),
        # which the sample's `except Exception` swallows; the sampler then slept on and the
        # service's shutdown waited for it forever.
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


_USER = "/api/admin/users/{user_id}/sessions"

routes = [
    Route("/api/admin/login", admin_login, methods=["POST"]),
    Route("/api/admin/logout", admin_logout, methods=["POST"]),
    Route("/api/admin/overview", overview, methods=["GET"]),
    # The same handlers as /api/users/...: under /api/admin/ so the page's cookie path covers
    # them and an operator finds every admin endpoint in one place.
    Route(_USER, user_sessions, methods=["GET"], name="admin_user_sessions"),
    Route(_USER, revoke_user_sessions, methods=["DELETE"], name="admin_revoke_user_sessions"),
    Route(
        f"{_USER}/{{handle}}",
        revoke_user_session,
        methods=["DELETE"],
        name="admin_revoke_user_session",
    ),
]
