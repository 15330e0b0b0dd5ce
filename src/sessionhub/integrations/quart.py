"""Quart: the Flask adapter's sessions on :class:`~sessionhub.hub.AsyncSessionHub`.

Quart is Flask's API on asyncio, so ``quart.session`` is the same session as ``flask.session``
under SessionHub's Flask extension, configured from the same keys, and saved by the same rules;
only Redis is reached through ``redis.asyncio``, and the helpers for concurrent requests are
awaited (:class:`QuartSession`)::

    from sessionhub.integrations.quart import QuartSessionHub
    app = Quart(__name__)
    QuartSessionHub(app)        # or QuartSessionHub().init_app(app)

The hub is made on the first request inside the server's event loop and closed after serving.
"""

from __future__ import annotations

import contextlib
from typing import Any

import quart
from quart.sessions import SessionInterface, SessionMixin
from quart.wrappers import BaseRequestWebsocket

from ..exceptions import InvalidTokenError
from ..hub import AsyncSessionHub
from ..session import Session
from .asgi import LoopHub
from .atomic import NO_HUB, AsyncRequestSession
from .base import RequestSession, commit
from .flask import flask_settings, request_session, send_cookie

__all__ = ["HubSessionInterface", "QuartSession", "QuartSessionHub"]

EXTENSION_KEY = "sessionhub"


class QuartSession(AsyncRequestSession, SessionMixin):  # type: ignore[override]
    """``quart.session``: Flask's session under Quart's rules, with ``await
    session.increment(...)``, ``await session.append(...)`` and ``async with session.lock()``
    (:mod:`.atomic`)."""

    def _hub(self) -> AsyncSessionHub:
        interface = quart.current_app.session_interface
        if not isinstance(interface, HubSessionInterface):
            raise RuntimeError(NO_HUB)
        return interface.hubs.get()


class HubSessionInterface(SessionInterface):
    """A Quart ``SessionInterface`` over an :class:`AsyncSessionHub` per event loop."""

    def __init__(self, hubs: LoopHub) -> None:
        self.hubs = hubs

    async def open_session(self, app: quart.Quart, request: BaseRequestWebsocket) -> QuartSession:
        hub = self.hubs.get()
        ss = hub.settings.session
        cookie = request.cookies.get(ss.cookie_name)
        session: Session | None = None
        if cookie:
            with contextlib.suppress(InvalidTokenError):
                session = await hub.open(cookie)
        return request_session(ss, session, cookie, QuartSession)

    async def save_session(self, app: quart.Quart, session: SessionMixin, response: Any) -> None:
        if response is None or not isinstance(session, RequestSession):
            return  # a websocket: no response to carry a cookie, as with Quart's own sessions
        hub = self.hubs.get()
        request = quart.request
        user_agent = request.headers.get("User-Agent", "")
        ip = request.remote_addr or ""
        action = await hub.run(commit(hub.manager, session, user_agent=user_agent, ip=ip))
        ss = hub.settings.session
        refresh = self.should_set_cookie(app, session)
        send_cookie(ss, session, action, request.cookies.get(ss.cookie_name), refresh, response)


class QuartSessionHub:
    """The Quart extension: ``QuartSessionHub(app)`` or ``ext.init_app(app)``."""

    def __init__(self, app: quart.Quart | None = None) -> None:
        self._app = app
        if app is not None:
            self.init_app(app)

    def init_app(self, app: quart.Quart) -> None:
        """Install the session interface; reads ``app.config`` now, so configure first."""
        settings = flask_settings(app.config, quart.Quart.default_config)
        interface = HubSessionInterface(LoopHub(settings))
        app.session_interface = interface  # type: ignore[assignment]  # Quart types its own
        app.extensions[EXTENSION_KEY] = interface
        app.after_serving(interface.hubs.aclose)

    def hub(self, app: quart.Quart | None = None) -> AsyncSessionHub:
        """The hub behind ``app`` (default: the current app) in the running loop."""
        target = app or self._app or quart.current_app
        interface: HubSessionInterface = target.extensions[EXTENSION_KEY]
        return interface.hubs.get()
