"""Builds the ASGI application from settings."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings, load_settings
from ..exceptions import ReauthRequiredError
from ..hub import AsyncSessionHub
from ..inbox import InboxNotifier
from ..stores.base import Call
from ..stores.resilient import CoreObserver
from . import admin_page
from .auth import PasswordChecker
from .counts import Counts
from .errors import (
    ApiError,
    api_error_handler,
    http_error_handler,
    reauth_required_handler,
    unexpected_error_handler,
)
from .logs import RequestIdMiddleware, configure_service_logging
from .monitor import Monitor
from .openapi import routes as openapi_routes
from .routes import routes
from .routes_admin import routes as admin_routes
from .routes_admin import sampling
from .routes_messages import routes as message_routes
from .routes_presence import routes as presence_routes
from .routes_settings import routes as settings_routes
from .routes_users import routes as user_routes

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from .metrics import RequestPath

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


class _Both:
    """Two core observers as one (metrics and tracing)."""

    def __init__(self, first: CoreObserver, second: CoreObserver) -> None:
        self.first, self.second = first, second

    def redis_call(self, call: Call, started: float, ended: float, error: Exception | None) -> None:
        self.first.redis_call(call, started, ended, error)
        self.second.redis_call(call, started, ended, error)

    def mode_changed(self, degraded: bool) -> None:
        self.first.mode_changed(degraded)
        self.second.mode_changed(degraded)


def _observe(app: Starlette, hub: AsyncSessionHub, monitor: Monitor) -> None:
    """Attach metrics and tracing, as configured, to the hub (before it starts: a Redis that
    is down at start is already a transition to count)."""
    settings: Settings = app.state.settings
    core = hub.manager.core
    if settings.metrics.enabled:
        from .metrics import HubMetrics

        metrics = HubMetrics(hub, monitor, app.state.request_path)
        app.state.metrics = metrics
        hub.manager.observer = metrics
        core.observer = metrics
        monitor.refreshed.append(metrics.worker_gauges)
    if app.state.tracer is not None:
        from .tracing import RedisSpans

        spans = RedisSpans(app.state.tracer)
        core.observer = spans if core.observer is None else _Both(core.observer, spans)


def _tracer(settings: Settings) -> Tracer | None:
    if not settings.tracing.enabled:
        return None
    from .tracing import tracer_provider

    return tracer_provider().get_tracer("sessionhub")


def _middleware(tracer: Tracer | None, metrics: RequestPath | None) -> list[Middleware]:
    """Outermost first: the request id, so the other layers' log lines carry it; it also tells
    the metrics of each response (a layer of their own costs more than what they count)."""
    layers = [Middleware(RequestIdMiddleware, observer=metrics)]
    if tracer is not None:
        from .tracing import RequestSpans

        layers.append(Middleware(RequestSpans, tracer=tracer))
    return layers


def _request_path(settings: Settings) -> RequestPath | None:
    if not settings.metrics.enabled:
        return None
    from .metrics import RequestPath

    return RequestPath()


def _metrics_routes(settings: Settings) -> list[BaseRoute]:
    if not settings.metrics.enabled:
        return []
    from .metrics import metrics_endpoint

    return [Route("/metrics", metrics_endpoint, methods=["GET"])]


def create_app(settings: Settings, users_file: Path | None = None) -> Starlette:
    """The SessionHub service for ``settings``; users added to ``users_file`` (the config file
    ``sessionhub serve`` reads) can log in without a restart."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub = AsyncSessionHub(settings)
        app.state.hub = hub
        monitor = Monitor(hub, settings.metrics.refresh_interval)
        app.state.monitor = monitor
        _observe(app, hub, monitor)
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
        await monitor.start()
        # What exists now (modules, settings, the app) lives as long as the process. Frozen, it
        # is left out of full collections, which otherwise walk all of it every few hundred
        # milliseconds under load: 25-35 ms pauses at the 99th percentile, measured.
        gc.freeze()
        try:
            async with sampling(hub):
                yield
        finally:
            await monitor.aclose()
            await notifier.aclose()
            await hub.aclose()
            if settings.metrics.enabled:
                from .metrics import process_ended

                process_ended(app.state.metrics)

    tracer = _tracer(settings)
    request_path = _request_path(settings)
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
            *_metrics_routes(settings),
        ],
        middleware=[*_middleware(tracer, request_path), Middleware(ReissuedCookie)],
        lifespan=lifespan,
        exception_handlers={
            ApiError: api_error_handler,
            ReauthRequiredError: reauth_required_handler,
            HTTPException: http_error_handler,
            Exception: unexpected_error_handler,
        },
    )
    app.state.tracer = tracer
    app.state.request_path = request_path
    app.state.settings = settings
    app.state.passwords = PasswordChecker(settings.users, users_file)
    app.state.counts = Counts()
    if settings.metrics.enabled:
        from .metrics import PrometheusCounts

        app.state.counts = PrometheusCounts()
    return app


def app_from_environment() -> Starlette:
    """Factory for ``uvicorn --factory`` and worker processes: settings from the environment."""
    settings = load_settings()
    configure_service_logging(settings.server.log_level, settings.log.format)
    return create_app(settings, users_file(settings))


def users_file(settings: Settings) -> Path:
    """The config file the service's users come from, whether or not it exists yet (a fresh
    checkout has none until ``sessionhub users add`` writes ./config.yaml)."""
    return Path(settings.source or os.environ.get("SESSIONHUB_CONFIG") or "config.yaml").resolve()
