"""Each framework adapter against the session it replaces, in process, on one redis-server.

Every pair runs the same two views (``read``: the signed-in user's name; ``read-modify``: a
counter incremented) with the same session cookie, called straight through WSGI or ASGI (no
HTTP server, no test client), so the figures are the framework plus its session layer. Rounds
of the two sides are interleaved and each figure is the median of the rounds.

Peers: Flask-Session 0.8 on Redis (Flask); Django's cache backend on Django's RedisCache
(Django); Litestar's server-side sessions on its RedisStore (Litestar); Starlette's and Quart's
own signed-cookie sessions, which keep the data in the cookie and never call Redis (Starlette,
Quart).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import time
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any

from _common import SECRET, redis_server

Request = Callable[[str, str], tuple[int, list[str]]]
"""``(path, cookie) -> (status, Set-Cookie values)``: one request, run to completion."""


# -- drivers ----------------------------------------------------------------------------------


def wsgi_driver(app: Any) -> Request:
    """Requests straight into a WSGI app."""
    from werkzeug.test import EnvironBuilder

    def call(path: str, cookie: str) -> tuple[int, list[str]]:
        headers = {"Cookie": cookie} if cookie else {}
        environ = EnvironBuilder(path=path, headers=headers).get_environ()
        environ["wsgi.input"] = io.BytesIO()
        seen: dict[str, Any] = {}

        def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
            seen["status"] = int(status.split()[0])
            seen["cookies"] = [v for k, v in response_headers if k.lower() == "set-cookie"]

        body = app(environ, start_response)
        b"".join(body)
        if hasattr(body, "close"):
            body.close()
        return seen["status"], seen["cookies"]

    return call


class AsgiDriver:
    """Requests straight into an ASGI app, on one event loop kept for the whole benchmark."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self._started = asyncio.Event()
        self._stop = asyncio.Event()
        self._lifespan = self.loop.create_task(self._run_lifespan())
        self.loop.run_until_complete(self._started.wait())

    async def _run_lifespan(self) -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "lifespan.startup"}
            await self._stop.wait()
            return {"type": "lifespan.shutdown"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                self._started.set()

        await self.app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)

    async def request(self, path: str, cookie: str) -> tuple[int, list[str]]:
        """One request."""
        headers = [(b"host", b"testserver")]
        if cookie:
            headers.append((b"cookie", cookie.encode("latin-1")))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        out: dict[str, Any] = {"cookies": []}
        finished = asyncio.Event()
        asked = False

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await finished.wait()  # a server says "disconnect" only once the response is out
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                finished.set()
            if message["type"] == "http.response.start":
                out["status"] = message["status"]
                out["cookies"] = [
                    bytes(v).decode("latin-1")
                    for k, v in message.get("headers", ())
                    if bytes(k).lower() == b"set-cookie"
                ]

        await self.app(scope, receive, send)
        return out["status"], out["cookies"]

    def call(self, path: str, cookie: str) -> tuple[int, list[str]]:
        """One request, from synchronous code."""
        return self.loop.run_until_complete(self.request(path, cookie))

    def loop_for(self, path: str, cookie: str, duration: float) -> int:
        """As many requests as fit in ``duration`` seconds, in one run of the loop."""

        async def run() -> int:
            done = 0
            end = time.perf_counter() + duration
            while time.perf_counter() < end:
                status, _ = await self.request(path, cookie)
                assert status == 200, status
                done += 1
            return done

        return self.loop.run_until_complete(run())

    def close(self) -> None:
        """Shut the app down (lifespan) and close the loop."""
        self._stop.set()
        self.loop.run_until_complete(self._lifespan)
        self.loop.close()


# -- apps -------------------------------------------------------------------------------------


def _view(session: Any, action: str) -> dict[str, Any]:
    if action == "login":
        session["user"] = "alice"
        session["n"] = 0
        return {"ok": True}
    if action == "read":
        return {"user": session.get("user")}
    session["n"] = session.get("n", 0) + 1
    return {"user": session.get("user"), "n": session["n"]}


def flask_app(url: str, peer: bool) -> Any:
    """Flask with Flask-Session 0.8 (peer) or SessionHub."""
    import flask
    import redis

    app = flask.Flask("bench")
    app.config.update(SECRET_KEY=SECRET, SESSION_TYPE="redis", SESSION_PERMANENT=True)
    app.config["SESSION_REDIS"] = redis.Redis.from_url(url)

    @app.get("/<action>")
    def view(action: str) -> Any:
        return _view(flask.session, action)

    if peer:
        import flask_session

        flask_session.Session(app)
    else:
        from sessionhub.integrations.flask import FlaskSessionHub

        FlaskSessionHub(app)
    return app


def quart_app(url: str, peer: bool) -> Any:
    """Quart with its own cookie sessions (peer) or SessionHub."""
    import quart

    app = quart.Quart("bench")
    app.config.update(SECRET_KEY=SECRET, SESSION_PERMANENT=True)
    app.config["SESSIONHUB"] = {"REDIS": {"URL": url}}

    @app.get("/<action>")
    async def view(action: str) -> Any:
        return _view(quart.session, action)

    if not peer:
        from sessionhub.integrations.quart import QuartSessionHub

        QuartSessionHub(app)
    return app


def starlette_app(url: str, peer: bool) -> Any:
    """Starlette with its own cookie SessionMiddleware (peer) or SessionHub's."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def view(request: Any) -> JSONResponse:
        return JSONResponse(_view(request.session, request.path_params["action"]))

    if peer:
        from starlette.middleware.sessions import SessionMiddleware as Peer

        middleware = Middleware(Peer, secret_key=SECRET)
    else:
        from sessionhub.integrations.asgi import SessionMiddleware

        settings = {"REDIS": {"URL": url}}
        middleware = Middleware(SessionMiddleware, secret_key=SECRET, settings=settings)
    return Starlette(routes=[Route("/{action}", view)], middleware=[middleware])


def litestar_app(url: str, peer: bool) -> Any:
    """Litestar with its server-side sessions on RedisStore (peer) or SessionHub's plugin."""
    from bench_adapters_litestar import make_app

    return make_app(url, peer, _view)


def django_handler(url: str, peer: bool) -> Any:
    """Django's WSGI handler with the cache backend on RedisCache (peer) or SessionHub."""
    import django
    from django.conf import settings as dj

    if not dj.configured:
        dj.configure(
            SECRET_KEY=SECRET,
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF="bench_adapters_django",
            MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
            INSTALLED_APPS=["django.contrib.sessions"],
            DATABASES={},
            CACHES={
                "default": {
                    "BACKEND": "django.core.cache.backends.redis.RedisCache",
                    "LOCATION": url,
                }
            },
            SESSIONHUB={"REDIS": {"URL": url}},
            USE_TZ=True,
        )
        django.setup()
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    engine = "django.contrib.sessions.backends.cache" if peer else "sessionhub.integrations.django"
    with override_settings(SESSION_ENGINE=engine):
        return WSGIHandler()


# -- measuring --------------------------------------------------------------------------------


def _cookie(set_cookies: list[str], name: str) -> str:
    for header in set_cookies:
        jar: SimpleCookie = SimpleCookie()
        jar.load(header.replace("; partitioned", ""))
        if name in jar:
            return f"{name}={jar[name].value}"
    raise AssertionError(f"no {name} cookie in {set_cookies}")


def sync_rate(call: Request, path: str, cookie: str, duration: float) -> float:
    """Requests per second of ``call`` for ``duration`` seconds."""
    done = 0
    start = time.perf_counter()
    end = start + duration
    while time.perf_counter() < end:
        status, _ = call(path, cookie)
        assert status == 200, status
        done += 1
    return done / (time.perf_counter() - start)


PAIRS: dict[str, tuple[Callable[[str, bool], Any], str, str]] = {
    # name: (app factory, kind, cookie name)
    "flask": (flask_app, "wsgi", "session"),
    "django": (django_handler, "wsgi", "sessionid"),
    "quart": (quart_app, "asgi", "session"),
    "starlette": (starlette_app, "asgi", "session"),
    "litestar": (litestar_app, "asgi", "session"),
}


def measure(name: str, url: str, duration: float, rounds: int) -> dict[str, Any]:
    """Both sides of one pair: requests/s per round, for read and read-modify."""
    factory, kind, cookie_name = PAIRS[name]
    sides: dict[str, Any] = {}
    closers: list[Callable[[], None]] = []
    for side, peer in (("peer", True), ("sessionhub", False)):
        app = factory(url, peer)
        if kind == "wsgi":
            call = wsgi_driver(app)
            status, cookies = call("/login", "")

            def rate(path: str, cookie: str, call: Request = call) -> float:
                return sync_rate(call, path, cookie, duration)

        else:
            driver = AsgiDriver(app)
            closers.append(driver.close)
            status, cookies = driver.call("/login", "")

            def rate(path: str, cookie: str, driver: AsgiDriver = driver) -> float:
                start = time.perf_counter()
                return driver.loop_for(path, cookie, duration) / (time.perf_counter() - start)

        assert status == 200, (name, side, status)
        sides[side] = (rate, _cookie(cookies, cookie_name))
    out: dict[str, Any] = {}
    for path in ("/read", "/read-modify"):
        runs: dict[str, list[float]] = {"peer": [], "sessionhub": []}
        for _ in range(rounds):
            for side, (rate, cookie) in sides.items():
                runs[side].append(rate(path, cookie))
        out[path.strip("/")] = runs
    for close in closers:
        close()
    return out


def render(results: dict[str, Any]) -> str:
    """The Markdown table for docs/BENCHMARKS.md."""
    lines = [
        "| framework | request | peer req/s | SessionHub req/s | ratio | at least as fast |",
        "|---|---|---|---|---|---|",
    ]
    for name, ops in results.items():
        for op, runs in ops.items():
            peer = statistics.median(runs["peer"])
            hub = statistics.median(runs["sessionhub"])
            ratio = hub / peer
            met = "yes" if ratio >= 1.0 else "NO"
            lines.append(f"| {name} | {op} | {peer:,.0f} | {hub:,.0f} | {ratio:.2f}x | {met} |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per side")
    p.add_argument("--only", nargs="*", choices=sorted(PAIRS), help="pairs to run")
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every pair (or ``--only`` those), on one throw-away redis-server."""
    results: dict[str, Any] = {}
    with redis_server() as server:
        for name in args.only or list(PAIRS):
            results[name] = measure(name, server.url, args.duration, args.rounds)
    return results


def main() -> None:
    print(render(run(parser().parse_args())))


if __name__ == "__main__":
    main()
