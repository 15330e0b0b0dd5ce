"""Builds the ASGI application from settings."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings, load_settings
from ..exceptions import ReauthRequiredError
from ..hub import AsyncSessionHub
from ..inbox import InboxNotifier
from . import admin_page
from .auth import PasswordChecker
from .errors import (
    ApiError,
    api_error_handler,
    http_error_handler,
    reauth_required_handler,
    unexpected_error_handler,
)
from .openapi import routes as openapi_routes
from .routes import routes
from .routes_admin import routes as admin_routes
from .routes_admin import sampling
from .routes_messages import routes as message_routes
from .routes_presence import routes as presence_routes
from .routes_settings import routes as settings_routes
from .routes_users import routes as user_routes

log = logging.getLogger("sessionhub.service")

CONNECTED_MESSAGE = "Redis connected, sessions stored in Redis"


class ReissuedCookie:
    """Sends the new cookie of a session that moved to the current ``SECRET_KEY`` while it was
    opened (``current_session`` leaves it in the request state), whatever the route answers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookie = scope.get("state", {}).get("reissued_cookie")
                if cookie is not None:
                    headers = list(message.get("headers", ()))
                    headers.append((b"set-cookie", cookie.encode("latin-1")))
                    message["headers"] = headers
            await send(message)

        await self.app(scope, receive, sending)


def create_app(settings: Settings, users_file: Path | None = None) -> Starlette:
    """The SessionHub service for ``settings``; users added to ``users_file`` (the config file
    ``sessionhub serve`` reads) can log in without a restart."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub = AsyncSessionHub(settings)
        app.state.hub = hub
        await hub.start()
        if settings.session.type == "memory":
            log.warning("SESSION.TYPE is memory: sessions live in this process only")
        else:
            health = await hub.health()  # a failed ping opens the circuit and logs degraded mode
            if health["status"] == "healthy":
                log.info("%s (%s)", CONNECTED_MESSAGE, settings.redis.masked_url())
        notifier = InboxNotifier(hub.features.inbox, hub.client)
        await notifier.start()
        app.state.notifier = notifier
        # What exists now (modules, settings, the app) lives as long as the process. Frozen, it
        # is left out of full collections, which otherwise walk all of it every few hundred
        # milliseconds under load: 25-35 ms pauses at the 99th percentile, measured.
        gc.freeze()
        try:
            async with sampling(hub):
                yield
        finally:
            await notifier.aclose()
            await hub.aclose()

    app = Starlette(
        routes=[
            *routes,
            *user_routes,
            *settings_routes,
            *presence_routes,
            *message_routes,
            *openapi_routes,
            *admin_routes,
            *admin_page.routes(),
        ],
        lifespan=lifespan,
        middleware=[Middleware(ReissuedCookie)],
        exception_handlers={
            ApiError: api_error_handler,
            ReauthRequiredError: reauth_required_handler,
            HTTPException: http_error_handler,
            Exception: unexpected_error_handler,
        },
    )
    app.state.settings = settings
    app.state.passwords = PasswordChecker(settings.users, users_file)
    return app


def app_from_environment() -> Starlette:
    """Factory for ``uvicorn --factory`` and worker processes: settings from the environment."""
    settings = load_settings()
    return create_app(settings, users_file(settings))


def users_file(settings: Settings) -> Path:
    """The config file the service's users come from, whether or not it exists yet (a fresh
    checkout has none until ``sessionhub users add`` writes ./config.yaml)."""
    return Path(settings.source or os.environ.get("SESSIONHUB_CONFIG") or "config.yaml").resolve()
