"""One authenticated read (``GET /api/me``) on a bare Starlette app, three ways: SessionHub's ASGI
middleware, starsessions (Redis store, autoload) and no session at all (the floor).

    BENCH_REDIS_URL=redis://... BENCH_ASGI=sessionhub python bench/asgi_app.py --port 8002

The same module drives requests in process (:func:`drive`), for the instruction counts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SECRET = "bench-secret-key-0123456789"


async def me(request: Request) -> Response:
    kind = request.app.state.kind
    if kind == "floor":
        request.cookies.get("session")
        user: Any = "alice"
    elif kind == "starsessions":
        user = request.session.get("user_id")
    else:
        user = request.scope["session"].user_id
    if user is None:
        return JSONResponse({"success": False}, status_code=401)
    return JSONResponse({"success": True, "data": {"user_id": user}})


async def healthz(request: Request) -> Response:
    return JSONResponse({"success": True})


def create_app(kind: str, url: str) -> Any:
    app = Starlette(routes=[Route("/api/me", me), Route("/healthz", healthz)])
    app.state.kind = kind
    if kind == "sessionhub":
        from sessionhub.integrations.asgi import SessionMiddleware

        settings = {"SECRET_KEY": SECRET, "REDIS": {"URL": url}, "SESSION": {"TYPE": "redis"}}
        return SessionMiddleware(app, settings=settings)
    if kind == "starsessions":
        from starsessions import SessionAutoloadMiddleware, SessionMiddleware
        from starsessions.stores.redis import RedisStore

        app.add_middleware(SessionAutoloadMiddleware)
        app.add_middleware(
            SessionMiddleware, store=RedisStore(url), lifetime=7200, cookie_https_only=False
        )
    return app


async def drive(app: Any, cookie: bytes, n: int) -> None:
    """``n`` requests straight into the ASGI app: no socket, no server."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/me",
        "raw_path": b"/api/me",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench"), (b"cookie", cookie)],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(n):
        await app(dict(scope), receive, send)
    if set(statuses) != {200}:
        raise RuntimeError(f"unexpected statuses {set(statuses)}")


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_app(os.environ.get("BENCH_ASGI", "floor"), os.environ.get("BENCH_REDIS_URL", ""))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()


def run_in_process(kind: str, url: str, cookie: str, n: int) -> None:
    """Warm up, then ``n`` requests (what callgrind counts is the difference of two ``n``)."""
    app = create_app(kind, url)

    async def go() -> None:
        await drive(app, cookie.encode(), 50)
        await drive(app, cookie.encode(), n)

    asyncio.run(go())
