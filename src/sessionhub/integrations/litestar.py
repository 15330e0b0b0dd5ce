"""Litestar: SessionHub's ASGI session middleware as a Litestar plugin.

::

    from sessionhub.integrations.litestar import SessionHubPlugin
    app = Litestar(route_handlers=[...], plugins=[SessionHubPlugin(settings=load_settings())])

``request.session`` is the same :class:`~sessionhub.integrations.atomic.AsyncRequestSession` (a
``dict``, with ``await request.session.increment(...)``) as under Starlette;
``request.set_session({...})`` and ``request.clear_session()`` work too, and only changed keys
are written. Litestar builds a middleware stack per route, so
the plugin holds the one hub they share; it is closed at shutdown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar.config.app import AppConfig
from litestar.middleware import DefineMiddleware
from litestar.plugins import InitPluginProtocol

from ..config import Settings
from ..hub import AsyncSessionHub
from .asgi import LoopHub, SessionMiddleware
from .atomic import AsyncRequestSession
from .base import RequestSession, merge_settings

__all__ = ["AsyncRequestSession", "LitestarSessionMiddleware", "RequestSession", "SessionHubPlugin"]


class LitestarSessionMiddleware(SessionMiddleware):
    """The ASGI middleware with the data decoded before the handler: Litestar's
    ``request.session`` hands the dict over without a hook, and msgspec reads a dict raw."""

    load_eagerly = True


class SessionHubPlugin(InitPluginProtocol):
    """Adds the session middleware to every route and closes the hub at shutdown."""

    def __init__(
        self,
        *,
        settings: Settings | Mapping[str, Any] | None = None,
        hub: AsyncSessionHub | None = None,
    ) -> None:
        resolved = hub.settings if hub is not None else merge_settings(settings)
        self.hubs = LoopHub(resolved, hub)

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Litestar's plugin hook."""
        # Plain ASGI, typed on mappings rather than on Litestar's scope TypedDicts.
        middleware = DefineMiddleware(LitestarSessionMiddleware, hubs=self.hubs)  # type: ignore[arg-type]
        app_config.middleware.append(middleware)
        app_config.on_shutdown.append(self.hubs.aclose)
        return app_config

    def hub(self) -> AsyncSessionHub:
        """The hub of the running event loop (stats, health, admin operations)."""
        return self.hubs.get()
