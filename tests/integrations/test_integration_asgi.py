"""ASGI specifics: non-HTTP scopes pass through, FastAPI's user dependency, lifespan shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import build_settings
from sessionhub.integrations.asgi import SessionMiddleware, cookie_header
from sessionhub.integrations.base import CookieAction


def test_non_http_scopes_get_no_session(redis_url: str) -> None:
    """A websocket scope reaches the app untouched, without a session or a hub."""
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(dict(scope))

    middleware = SessionMiddleware(app, settings=build_settings(redis_url))

    async def run() -> None:
        await middleware({"type": "websocket", "path": "/ws"}, _never, _discard)

    asyncio.run(run())
    assert "session" not in seen[0]
    assert middleware._hub is None


def test_lifespan_shutdown_closes_the_hub(redis_url: str) -> None:
    """The middleware closes the Redis pool it made when the server shuts down."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    async def home(request: Any) -> PlainTextResponse:
        request.session["x"] = 1
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", home)])
    app.add_middleware(SessionMiddleware, settings=build_settings(redis_url))
    with TestClient(app) as client:
        assert client.get("/").status_code == 200
        middleware = app.middleware_stack
        while not isinstance(middleware, SessionMiddleware):
            middleware = middleware.app  # type: ignore[attr-defined]
        assert middleware._hub is not None
    assert middleware._hub is None


def test_fastapi_current_user_is_401_without_login(redis_url: str) -> None:
    """The current-user dependency answers 401 for an anonymous session and the id after login."""
    from fastapi_contract_app import make_app
    from starlette.testclient import TestClient

    with TestClient(make_app(build_settings(redis_url))) as client:
        assert client.get("/whoami/user").status_code == 401
        client.post("/login", json={"username": "carol"})
        assert client.get("/whoami/user").json() == {"user": "carol"}


def test_cookie_header_flags() -> None:
    """The Set-Cookie header carries the configured flags, spelled and ordered as Starlette's own
    SessionMiddleware writes them; clearing expires it at once."""
    ss = build_settings(None, session={"COOKIE_SECURE": True, "COOKIE_DOMAIN": "example.com"})
    header = cookie_header(ss.session, CookieAction(set_value="v", max_age=60))
    assert header == (
        b"session=v; path=/; Max-Age=60; httponly; samesite=lax; secure; domain=example.com"
    )
    cleared = cookie_header(ss.session, CookieAction(clear=True))
    assert cleared is not None
    assert b"Max-Age=0" in cleared
    assert cookie_header(ss.session, CookieAction()) is None


async def _never() -> dict[str, Any]:
    await asyncio.sleep(3600)
    return {}


async def _discard(message: Any) -> None:
    return None
