"""ASGI (Starlette, FastAPI, any ASGI app): ``request.session`` / ``scope["session"]``.

A pure ASGI middleware over :class:`~sessionhub.hub.AsyncSessionHub` (redis.asyncio): no thread
pool, no ``BaseHTTPMiddleware``. Only ``http`` scopes get a session; the middleware watches the
``lifespan`` scope just to close its Redis pool at shutdown::

    app = FastAPI()
    app.add_middleware(SessionMiddleware, settings=load_settings())

    @app.get("/me")
    async def me(user_id: str = Depends(current_user)) -> dict[str, str]:
        return {"user": user_id}

The session is created in Redis only once a handler stores a value in it, and saved (changed
keys only) when the response starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from email.utils import formatdate
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request, cookie_parser
from starlette.responses import JSONResponse

from ..config import SessionSettings, Settings
from ..exceptions import InvalidTokenError, ReauthRequiredError
from ..hub import AsyncSessionHub
from ..session import Session
from .base import CookieAction, RequestSession, commit, merge_settings

__all__ = [
    "RequestSession",
    "SessionMiddleware",
    "current_session",
    "current_user",
    "require_fresh",
    "session_hub",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HUB_SCOPE_KEY = "sessionhub.hub"


def cookie_header(ss: SessionSettings, action: CookieAction) -> bytes | None:
    """The ``Set-Cookie`` header value for ``action``, or ``None`` when the cookie stays."""
    max_age: int | None
    if action.clear:
        value, max_age = "", 0
    elif action.set_value is not None:
        value, max_age = action.set_value, action.max_age
    else:
        return None
    parts = [f"{ss.cookie_name}={value}", f"Path={ss.cookie_path}"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
        if max_age == 0:
            parts.append("Expires=" + formatdate(0, usegmt=True))
    if ss.cookie_domain:
        parts.append(f"Domain={ss.cookie_domain}")
    if ss.cookie_secure:
        parts.append("Secure")
    if ss.cookie_httponly:
        parts.append("HttpOnly")
    parts.append("SameSite=" + ss.cookie_samesite.capitalize())
    if ss.cookie_partitioned:
        parts.append("Partitioned")
    return "; ".join(parts).encode("latin-1")


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


class SessionMiddleware:
    """Gives every HTTP request ``scope["session"]`` (a :class:`RequestSession`)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings | Mapping[str, Any] | None = None,
        hub: AsyncSessionHub | None = None,
    ) -> None:
        self.app = app
        self.settings = hub.settings if hub is not None else merge_settings(settings)
        self._hub = hub
        self._owns_hub = hub is None

    @property
    def hub(self) -> AsyncSessionHub:
        """The hub, made on first use inside the server's event loop."""
        if self._hub is None:
            self._hub = AsyncSessionHub(self.settings)
        return self._hub

    async def aclose(self) -> None:
        """Close the hub this middleware made (a hub passed in is the caller's to close)."""
        if self._hub is not None and self._owns_hub:
            hub, self._hub = self._hub, None
            await hub.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hub = self.hub
        ss = self.settings.session
        cookie = cookie_parser(_header(scope, b"cookie")).get(ss.cookie_name)
        session: Session | None = None
        if cookie:
            with contextlib.suppress(InvalidTokenError):
                session = await hub.open(cookie)
        rs = RequestSession(session, had_cookie=bool(cookie), permanent_default=ss.permanent)
        scope["session"] = rs
        scope[HUB_SCOPE_KEY] = hub
        client = scope.get("client")
        ip = str(client[0]) if client else ""
        user_agent = _header(scope, b"user-agent")

        started = False

        async def send_with_cookie(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                action = await hub.run(commit(hub.manager, rs, user_agent=user_agent, ip=ip))
                header = cookie_header(ss, action)
                headers = list(message.get("headers", ()))
                if header is not None or rs.accessed:
                    headers.append((b"vary", b"Cookie"))
                if header is not None:
                    headers.append((b"set-cookie", header))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_cookie)
        except ReauthRequiredError as exc:
            # Raised by require_fresh anywhere in the app: the same 401 body as every adapter.
            if started:
                raise
            await JSONResponse(exc.body(), status_code=401)(scope, receive, send_with_cookie)

    def _lifespan_send(self, send: Send) -> Send:
        async def lifespan_send(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.aclose()
            await send(message)

        return lifespan_send


async def current_session(request: Request) -> RequestSession:
    """Dependency (FastAPI ``Depends``): the request's session; needs the middleware."""
    session = request.scope.get("session")
    if not isinstance(session, RequestSession):
        raise RuntimeError("no SessionHub session: add sessionhub's SessionMiddleware")
    return session


async def current_user(request: Request) -> str:
    """Dependency: the logged-in user id; HTTP 401 when the session has none."""
    user_id = (await current_session(request)).user_id
    if user_id is None:
        raise HTTPException(status_code=401, detail="not authenticated")
    return user_id


def require_fresh(
    max_age: int, level: str | None = None
) -> Callable[[Request], Awaitable[RequestSession]]:
    """Dependency factory: the session, or 401 ``reauth_required`` (JSON, answered by the
    middleware) unless its user authenticated within ``max_age`` seconds, at ``level`` or
    stronger: ``Depends(require_fresh(300, "mfa"))``."""

    async def fresh_session(request: Request) -> RequestSession:
        session = await current_session(request)
        (await session_hub(request)).require_fresh(session.session, max_age, level)
        return session

    return fresh_session


async def session_hub(request: Request) -> AsyncSessionHub:
    """Dependency: the hub behind the middleware (stats, health, admin operations)."""
    hub = request.scope.get(HUB_SCOPE_KEY)
    if not isinstance(hub, AsyncSessionHub):
        raise RuntimeError("no SessionHub hub: add sessionhub's SessionMiddleware")
    return hub
