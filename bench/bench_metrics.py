"""What metrics cost a request: the service with METRICS.ENABLED on and off, in the same run.

    python bench/bench_metrics.py [--requests 3000] [--rounds 7] [--multiprocess]

Both apps run in this process on one fresh redis-server and are called in turn, round after
round, straight through ASGI (no HTTP server, no load generator: on a shared machine their noise
is larger than what is measured). Each request is ``GET /api/auth/me`` with a live session (one
Redis round trip) or ``POST /api/session/extend``. The figure is this process's CPU time per
request (``time.process_time``), which Redis's own work and other processes do not enter; the
overhead compares the medians. ``--multiprocess`` sets
``PROMETHEUS_MULTIPROC_DIR`` first, as ``sessionhub serve --workers N`` does, so every count
goes to a memory-mapped file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
from typing import Any

from _common import PASSWORD, redis_server, save_result, settings_dict, table

COOKIE_NAME = "session"
ENDPOINTS = {"read": ("GET", "/api/auth/me"), "read-modify": ("POST", "/api/session/extend")}


async def call(app: Any, method: str, path: str, cookie: str, body: bytes = b"") -> int:
    """One request straight through ASGI; returns its status."""
    status = 0
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"bench"),
            (b"cookie", f"{COOKIE_NAME}={cookie}".encode()),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 5000),
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def login(app: Any) -> str:
    """Log alice in on ``app`` and return her cookie value."""
    cookie = ""

    async def send(message: dict[str, Any]) -> None:
        nonlocal cookie
        for name, value in message.get("headers", ()):
            if name == b"set-cookie":
                cookie = value.decode().split(";")[0].split("=", 1)[1]

    body = json.dumps({"username": "alice", "password": PASSWORD}).encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/auth/login",
        "raw_path": b"/api/auth/login",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 5000),
        "scheme": "http",
        "http_version": "1.1",
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    await app(scope, receive, send)
    return cookie


async def per_request_cpu(app: Any, cookie: str, what: str, requests: int) -> float:
    """CPU microseconds per request of ``requests`` sequential requests."""
    method, path = ENDPOINTS[what]
    start = time.process_time()
    for _ in range(requests):
        status = await call(app, method, path, cookie)
        assert status == 200, status
        await asyncio.sleep(0)  # a server's event loop turns between requests: let it turn
    return (time.process_time() - start) / requests * 1e6


async def measure(args: argparse.Namespace, url: str) -> dict[str, Any]:
    from sessionhub.config import Settings
    from sessionhub.service.app import create_app

    def settings(metrics: bool) -> Settings:
        return Settings.model_validate({**settings_dict(url), "METRICS": {"ENABLED": metrics}})

    # Two apps of each kind, made in the order on, off, off, on: the app made first runs
    # measurably slower (by up to a tenth), whatever it is, and this cancels that out.
    apps = [(kind, create_app(settings(kind == "on"))) for kind in ("on", "off", "off", "on")]
    runs: dict[tuple[str, str], list[float]] = {}
    async with contextlib.AsyncExitStack() as stack:
        for _, app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
        cookies = [await login(app) for _, app in apps]
        for (_, app), cookie in zip(apps, cookies, strict=True):  # warm-up
            for what in ENDPOINTS:
                await per_request_cpu(app, cookie, what, args.requests // 10)
        # The app measured first in a round pays for what the loop left behind (timers,
        # garbage), so the order alternates.
        order = list(zip(apps, cookies, strict=True))
        for _ in range(args.rounds):
            order.reverse()
            for what in ENDPOINTS:
                for (kind, app), cookie in order:
                    us = await per_request_cpu(app, cookie, what, args.requests)
                    runs.setdefault((kind, what), []).append(us)
    rows = []
    for what in ENDPOINTS:
        on, off = runs[("on", what)], runs[("off", what)]
        ratio = statistics.median(on) / statistics.median(off)
        rows.append(
            {
                "request": what,
                "on_us": statistics.median(on),
                "off_us": statistics.median(off),
                "overhead_pct": (ratio - 1) * 100,
            }
        )
    return {
        "requests": args.requests,
        "rounds": args.rounds,
        "multiprocess": args.multiprocess,
        "rows": rows,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.multiprocess:
        # Before prometheus_client is imported: it picks its value class then.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-metrics-")
    with redis_server() as redis:
        result = asyncio.run(measure(args, redis.url))
    save_result("metrics-multiprocess" if args.multiprocess else "metrics", result)
    return result


def render(result: dict[str, Any]) -> str:
    mode = "multiprocess files" if result["multiprocess"] else "one process"
    rows = [
        [r["request"], f"{r['off_us']:.0f}", f"{r['on_us']:.0f}", f"{r['overhead_pct']:+.1f} %"]
        for r in result["rows"]
    ]
    headers = [f"request ({mode})", "CPU µs, metrics off", "CPU µs, metrics on", "overhead"]
    return table(headers, rows)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=3000, help="requests per measurement")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--multiprocess", action="store_true", help="count into multiprocess files")
    return p


def main() -> None:
    print(render(run(parser().parse_args())))


if __name__ == "__main__":
    main()
