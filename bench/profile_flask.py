"""Where a Flask request's time goes: CPU per request of ``bench/flask_app.py`` on each back end.

    python bench/profile_flask.py [--requests 5000] [--profile sessionhub]

The WSGI app is called directly (no HTTP server, no load generator), so the figure is the
process's own CPU per request (``time.process_time``), best of five batches: the no-session
floor, Flask-Session 0.8 and SessionHub's Flask integration, for a read (``GET /api/auth/me``)
and a read-modify (``POST /api/session/extend``). ``--profile`` prints cProfile's top functions
for one back end.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import io
import os
import pstats
import time
from collections.abc import Callable
from typing import Any

from _common import UA, redis_server, table

BACKENDS = ("floor", "flask-session", "sessionhub")
REQUESTS = {"read": ("GET", "/api/auth/me"), "read-modify": ("POST", "/api/session/extend")}


def _caller(app: Any, method: str, path: str, cookie: str) -> Callable[[], None]:
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    def call() -> None:
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "SERVER_NAME": "bench",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "CONTENT_LENGTH": "0",
            "HTTP_COOKIE": cookie,
            "HTTP_USER_AGENT": UA,
            "REMOTE_ADDR": "127.0.0.1",
        }
        body = app.wsgi_app(environ, start_response)
        b"".join(body)
        body.close()
        if not statuses.pop().startswith("200"):
            raise RuntimeError(f"{method} {path} did not answer 200")

    return call


def _repeat(call: Callable[[], None], n: int) -> None:
    for _ in range(n):
        call()


def _app(backend: str, url: str) -> Any:
    os.environ["BENCH_REDIS_URL"] = url
    os.environ["BENCH_FLASK_BACKEND"] = backend
    import flask_app

    return importlib.reload(flask_app).app


def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    result: dict[str, dict[str, float]] = {name: {} for name in REQUESTS}
    with redis_server() as server:
        for backend in BACKENDS:
            app = _app(backend, server.url)
            login = app.test_client().post("/api/auth/login", headers={"User-Agent": UA})
            cookie = "; ".join(h.split(";")[0] for h in login.headers.getlist("Set-Cookie"))
            for name, (method, path) in REQUESTS.items():
                call = _caller(app, method, path, cookie)
                for _ in range(300):
                    call()
                if args.profile == backend:
                    profiler = cProfile.Profile()
                    profiler.runcall(_repeat, call, args.requests)
                    print(f"== {backend}, {name}")
                    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
                best = float("inf")
                for _ in range(5):
                    start = time.process_time()
                    for _ in range(args.requests):
                        call()
                    best = min(best, (time.process_time() - start) / args.requests)
                result[name][backend] = best * 1e6
    return result


def render(result: dict[str, dict[str, float]]) -> str:
    rows = []
    for name, cpu in result.items():
        for backend in BACKENDS:
            over = cpu[backend] - cpu["floor"]
            rows.append(
                [name, backend, f"{cpu[backend]:.0f}", "" if backend == "floor" else f"{over:.0f}"]
            )
    return table(["request", "back end", "CPU us/request", "session's share us"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--profile", choices=BACKENDS)
    print(render(run(parser.parse_args())))


if __name__ == "__main__":
    main()
