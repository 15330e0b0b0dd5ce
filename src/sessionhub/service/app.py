"""Builds the ASGI application from settings."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from ..config import Settings, load_settings
from ..hub import AsyncSessionHub
from ..inbox import InboxNotifier
from .auth import PasswordChecker
from .errors import ApiError, api_error_handler, http_error_handler, unexpected_error_handler
from .openapi import routes as openapi_routes
from .routes import routes
from .routes_messages import routes as message_routes
from .routes_presence import routes as presence_routes
from .routes_settings import routes as settings_routes
from .routes_users import routes as user_routes

log = logging.getLogger("sessionhub.service")

CONNECTED_MESSAGE = "Redis connected, sessions stored in Redis"


def create_app(settings: Settings) -> Starlette:
    """The SessionHub service for ``settings``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub = AsyncSessionHub(settings)
        app.state.hub = hub
        await hub.start()
        mistake = hub.manager.core.config_error()
        if mistake is not None:  # not an outage to ride out from memory: refuse to start
            await hub.aclose()
            raise mistake
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
        ],
        lifespan=lifespan,
        exception_handlers={
            ApiError: api_error_handler,
            HTTPException: http_error_handler,
            Exception: unexpected_error_handler,
        },
    )
    app.state.settings = settings
    app.state.passwords = PasswordChecker(settings.users)
    return app


def app_from_environment() -> Starlette:
    """Factory for ``uvicorn --factory`` and worker processes: settings from the environment."""
    return create_app(load_settings())
