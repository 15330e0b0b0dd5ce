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

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Literal

from starlette.datastructures import Secret
from starlette.exceptions import HTTPException
from starlette.requests import Request, cookie_parser
from starlette.responses import JSONResponse

from ..config import SessionSettings, Settings
from ..exceptions import InvalidTokenError, ReauthRequiredError
from ..hub import AsyncSessionHub
from ..session import Session
from .atomic import AsyncRequestSession
from .base import CookieAction, RequestSession, commit, merge_settings

__all__ = [
    "AsyncRequestSession",
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
UNSET: Any = object()
"""An argument not given (Starlette's ``max_age=None`` means a browser-session cookie)."""
DEFAULT_ABSOLUTE_LIFETIME = SessionSettings.model_fields["absolute_lifetime"].default


EPOCH = "Thu, 01 Jan 1970 00:00:00 GMT"
STARLETTE_MAX_AGE = 14 * 24 * 60 * 60
"""Starlette's ``SessionMiddleware`` default ``max_age``."""


def cookie_header(
    ss: SessionSettings, action: CookieAction, *, starlette_spelling: bool = True
) -> bytes | None:
    """The ``Set-Cookie`` header value for ``action``, or ``None`` when the cookie stays.

    The middleware spells it as Starlette's own ``SessionMiddleware`` does (lower-case
    attributes, the same order), so switching middleware changes nothing a client or a proxy
    sees; the HTTP service keeps RFC 6265's capitalised names (``starlette_spelling=False``).
    Attribute names are case-insensitive to browsers either way.
    """

    def name(attribute: str) -> str:
        return attribute.lower() if starlette_spelling else attribute

    path = f"{name('Path')}={ss.cookie_path}"
    if action.clear:
        parts = [f"{ss.cookie_name}=", path, "Max-Age=0", f"{name('Expires')}={EPOCH}"]
    elif action.set_value is not None:
        parts = [f"{ss.cookie_name}={action.set_value}", path]
        if action.max_age is not None:
            parts.append(f"Max-Age={action.max_age}")
    else:
        return None
    if ss.cookie_httponly:
        parts.append(name("HttpOnly"))
    samesite = ss.cookie_samesite if starlette_spelling else ss.cookie_samesite.capitalize()
    parts.append(f"{name('SameSite')}={samesite}")
    if ss.cookie_secure:
        parts.append(name("Secure"))
    if ss.cookie_domain:
        parts.append(f"{name('Domain')}={ss.cookie_domain}")
    if ss.cookie_partitioned:
        parts.append(name("Partitioned"))
    return "; ".join(parts).encode("latin-1")


def starlette_settings(
    *,
    secret_key: str | None,
    session_cookie: str | None,
    max_age: int | None,
    path: str | None,
    same_site: str | None,
    https_only: bool | None,
    domain: str | None,
    partitioned: bool | None,
) -> dict[str, Any]:
    """The SESSION section that Starlette's ``SessionMiddleware`` arguments describe.

    Only arguments given count, except that ``secret_key`` (which Starlette requires) brings
    Starlette's 14-day ``max_age`` when none is given. A positive ``max_age`` makes sessions
    permanent, sends it as the cookie's ``Max-Age`` and is the idle timeout; ``None`` gives
    browser-session cookies.
    """
    if max_age is UNSET and secret_key is not None:
        max_age = STARLETTE_MAX_AGE
    section: dict[str, Any] = {}
    if max_age is None:
        section["PERMANENT"] = False
    elif max_age is not UNSET and max_age > 0:
        section.update(
            PERMANENT=True,
            EXPIRES=max_age,
            COOKIE_MAX_AGE=max_age,
            ABSOLUTE_LIFETIME=max(max_age, DEFAULT_ABSOLUTE_LIFETIME),
        )
    given = {
        "COOKIE_NAME": session_cookie,
        "COOKIE_PATH": path,
        "COOKIE_SAMESITE": same_site,
        "COOKIE_SECURE": https_only,
        "COOKIE_DOMAIN": domain,
        "COOKIE_PARTITIONED": partitioned,
    }
    section.update({key: value for key, value in given.items() if value is not None})
    return section


def _add_headers(message: Message, cookie: bytes | None, accessed: bool) -> None:
    headers = list(message.get("headers", ()))
    if cookie is not None or accessed:
        headers.append((b"vary", b"Cookie"))
    if cookie is not None:
        headers.append((b"set-cookie", cookie))
    message["headers"] = headers


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


class LoopHub:
    """An :class:`AsyncSessionHub` made on first use in the running event loop.

    A hub made on a loop that has since ended is replaced (Starlette's and Litestar's
    ``TestClient`` outside ``with`` run each request on a loop of their own): its maintenance
    task ended with that loop. A hub passed in is the caller's, used as it is.
    """

    def __init__(self, settings: Settings, hub: AsyncSessionHub | None = None) -> None:
        self.settings = settings
        self.current = hub
        self._owned = hub is None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> AsyncSessionHub:
        """The hub of the running loop."""
        loop = asyncio.get_running_loop()
        if self.current is not None and self._owned and self._loop is not loop:
            self.current = None
        if self.current is None:
            self.current = AsyncSessionHub(self.settings)
            self._loop = loop
        return self.current

    async def aclose(self) -> None:
        """Close the hub made here (a hub passed in is the caller's to close)."""
        if self.current is not None and self._owned:
            hub, self.current = self.current, None
            await hub.aclose()


def _adopt_replaced(rs: RequestSession, current: Any) -> None:
    # A framework that replaces scope["session"] (Litestar's set_session and clear_session)
    # means "the session is now this": carried into the request session, changed keys only.
    if current is rs:
        return
    values = dict(current) if isinstance(current, Mapping) else {}
    for key in [k for k in rs if k not in values]:
        del rs[key]
    rs.update(values)


class SessionMiddleware:
    """Gives every HTTP request ``scope["session"]`` (a :class:`RequestSession`).

    Takes Starlette's own ``SessionMiddleware`` arguments, so switching is a change of import;
    they fill in what ``settings`` (SessionHub's own, which win) leaves unset. A ``max_age`` of
    0 or less, a cookie the browser drops at once, stores nothing: the response still carries
    the cookie with that ``Max-Age``, under a token that names no session.
    """

    load_eagerly = False
    """Decode the stored data before the handler runs, for frameworks whose ``request.session``
    hands the dict over without a hook (Starlette calls :meth:`RequestSession.mark_accessed`)."""

    def __init__(
        self,
        app: ASGIApp,
        secret_key: str | Secret | None = None,
        session_cookie: str | None = None,
        max_age: int | None = UNSET,
        path: str | None = None,
        same_site: Literal["lax", "strict", "none"] | None = None,
        https_only: bool | None = None,
        domain: str | None = None,
        partitioned: bool | None = None,
        *,
        settings: Settings | Mapping[str, Any] | None = None,
        hub: AsyncSessionHub | None = None,
        hubs: LoopHub | None = None,
    ) -> None:
        self.app = app
        secret = None if secret_key is None else str(secret_key)
        section = starlette_settings(
            secret_key=secret,
            session_cookie=session_cookie,
            max_age=max_age,
            path=path,
            same_site=same_site,
            https_only=https_only,
            domain=domain,
            partitioned=partitioned,
        )
        if hubs is not None:
            self.settings = hubs.settings
        elif hub is not None:
            self.settings = hub.settings
        else:
            self.settings = merge_settings(settings, SECRET_KEY=secret, SESSION=section)
        self.discard_max_age: int | None = None
        if max_age is not UNSET and max_age is not None and max_age <= 0:
            self.discard_max_age = max_age
        self.hubs = hubs if hubs is not None else LoopHub(self.settings, hub)

    @property
    def _hub(self) -> AsyncSessionHub | None:
        return self.hubs.current

    @property
    def hub(self) -> AsyncSessionHub:
        """The hub, made on first use inside the server's event loop."""
        return self.hubs.get()

    async def aclose(self) -> None:
        """Close the hub this middleware made (a hub passed in is the caller's to close)."""
        await self.hubs.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.discard_max_age is not None:
            await self._discarding(scope, receive, send)
            return
        hub = self.hub
        ss = self.settings.session
        cookie = cookie_parser(_header(scope, b"cookie")).get(ss.cookie_name)
        session: Session | None = None
        if cookie:
            with contextlib.suppress(InvalidTokenError):
                session = await hub.open(cookie)
        rs = AsyncRequestSession(
            session,
            had_cookie=bool(cookie),
            permanent_default=ss.permanent,
            cookie_max_age=ss.cookie_max_age,
        )
        rs.hub = hub
        if self.load_eagerly:
            rs.load()
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
                _adopt_replaced(rs, scope.get("session"))
                action = await hub.run(commit(hub.manager, rs, user_agent=user_agent, ip=ip))
                _add_headers(message, cookie_header(ss, action), rs.accessed)
            await send(message)

        try:
            await self.app(scope, receive, send_with_cookie)
        except ReauthRequiredError as exc:
            # Raised by require_fresh anywhere in the app: the same 401 body as every adapter.
            if started:
                raise
            await JSONResponse(exc.body(), status_code=401)(scope, receive, send_with_cookie)

    async def _discarding(self, scope: Scope, receive: Receive, send: Send) -> None:
        # max_age <= 0: whatever is stored could never be asked for again, so nothing is.
        rs = AsyncRequestSession()
        rs.hub = self.hub
        scope["session"] = rs

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                header = None
                if rs:
                    unused = secrets.token_urlsafe(32)
                    action = CookieAction(set_value=unused, max_age=self.discard_max_age)
                    header = cookie_header(self.settings.session, action)
                _add_headers(message, header, rs.accessed)
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _lifespan_send(self, send: Send) -> Send:
        async def lifespan_send(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.aclose()
            await send(message)

        return lifespan_send


async def current_session(request: Request) -> AsyncRequestSession:
    """Dependency (FastAPI ``Depends``): the request's session; needs the middleware."""
    session = request.scope.get("session")
    if not isinstance(session, AsyncRequestSession):
        raise RuntimeError("no SessionHub session: add sessionhub's SessionMiddleware")
    session.load()  # a handler may hand it to JSONResponse, which reads the dict raw
    return session


async def current_user(request: Request) -> str:
    """Dependency: the logged-in user id; HTTP 401 when the session has none."""
    user_id = (await current_session(request)).user_id
    if user_id is None:
        raise HTTPException(status_code=401, detail="not authenticated")
    return user_id


def require_fresh(
    max_age: int, level: str | None = None
) -> Callable[[Request], Awaitable[AsyncRequestSession]]:
    """Dependency factory: the session, or 401 ``reauth_required`` (JSON, answered by the
    middleware) unless its user authenticated within ``max_age`` seconds, at ``level`` or
    stronger: ``Depends(require_fresh(300, "mfa"))``."""

    async def fresh_session(request: Request) -> AsyncRequestSession:
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
