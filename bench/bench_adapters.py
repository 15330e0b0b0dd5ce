"""Each framework adapter against the session its users would pick instead, in process, on one
redis-server.

The apps of ``adapter_apps.py`` (the same views on every framework: ``read`` answers the
signed-in user from the session, ``read-modify`` increments a counter in it) are called straight
through WSGI or ASGI, with no HTTP server and no test client, so the figures are the framework
plus its session layer. Each side cycles through ``--sessions`` sessions, each logged in through
the app's own ``/login``. The three sides of a framework (SessionHub, the peer, no session at
all) are measured in turn, round after round; requests/s is the median of the rounds and each
ratio the median of the per-round ratios. Redis counts the round trips each side makes (``INFO
stats``, ``total_reads_processed``, around every measured run: one per request read from a
client, whatever it carries). With ``--callgrind`` the CPU instructions per
request of each side are counted too (valgrind, ``callgrind.py``), a figure this machine's
noise does not move.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import time
from collections.abc import Callable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import adapter_apps
from _common import redis_server, table
from adapter_apps import FRAMEWORKS, PATHS, PEERS

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

    def many(self, path: str, cookies: list[str], count: int, duration: float) -> int:
        """Requests cycling through ``cookies``, ``count`` of them or as many as fit in
        ``duration`` seconds (``count`` 0), in one run of the loop; how many were made."""

        async def run() -> int:
            done = 0
            end = time.perf_counter() + duration
            while (done < count) if count else (time.perf_counter() < end):
                status, _ = await self.request(path, cookies[done % len(cookies)])
                assert status == 200, status
                done += 1
            return done

        return self.loop.run_until_complete(run())

    def close(self) -> None:
        """Shut the app down (lifespan) and close the loop."""
        self._stop.set()
        self.loop.run_until_complete(self._lifespan)
        self.loop.close()


def session_cookie(set_cookies: list[str], name: str) -> str:
    """The ``name=value`` Cookie header value that ``set_cookies`` sets."""
    for header in set_cookies:
        jar: SimpleCookie = SimpleCookie()
        jar.load(header.replace("; partitioned", "").replace("; Partitioned", ""))
        if name in jar:
            return f"{name}={jar[name].value}"
    raise AssertionError(f"no {name} cookie in {set_cookies}")


class Client:
    """One framework's app on one side, driven in process, with its signed-in sessions."""

    def __init__(self, framework: str, side: str, url: str, sessions: int) -> None:
        factory, kind, cookie_name = FRAMEWORKS[framework]
        self.app = factory(url, side)
        self.driver = AsgiDriver(self.app) if kind == "asgi" else None
        self._call: Request = self.driver.call if self.driver else wsgi_driver(self.app)
        self.cookies = [""]
        if side != "floor":
            self.cookies = [self.login(cookie_name) for _ in range(sessions)]

    def login(self, cookie_name: str) -> str:
        status, set_cookies = self._call(PATHS["login"], "")
        assert status == 200, status
        return session_cookie(set_cookies, cookie_name)

    def run(self, path: str, *, count: int = 0, duration: float = 0.0) -> tuple[int, float]:
        """Requests cycling through the sessions: ``count`` of them, or as many as fit in
        ``duration`` seconds; returns (requests, seconds)."""
        start = time.perf_counter()
        if self.driver is not None:
            done = self.driver.many(path, self.cookies, count, duration)
            return done, time.perf_counter() - start
        done, end, cookies = 0, start + duration, self.cookies
        while (done < count) if count else (time.perf_counter() < end):
            status, _ = self._call(path, cookies[done % len(cookies)])
            assert status == 200, status
            done += 1
        return done, time.perf_counter() - start

    def close(self) -> None:
        if self.driver is not None:
            self.driver.close()


# -- measuring --------------------------------------------------------------------------------


def round_trips(client: Any) -> int:
    """Requests Redis has read from its clients so far (``total_reads_processed``): one per
    round trip, however many commands it carries or a script runs; this INFO not counted."""
    return int(client.info("stats")["total_reads_processed"]) - 1


def measure(framework: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """The three sides of one framework: requests/s per round and Redis round trips per request,
    for read and read-modify."""
    import redis

    counter = redis.Redis.from_url(url)
    clients = {side: Client(framework, side, url, args.sessions) for side in adapter_apps.SIDES}
    out: dict[str, Any] = {}
    try:
        for request in ("read", "read-modify"):
            path = PATHS[request]
            for client in clients.values():  # warm-up: every session once
                client.run(path, count=len(client.cookies))
            runs: dict[str, list[float]] = {side: [] for side in clients}
            sent: dict[str, list[float]] = {side: [] for side in clients}
            for _ in range(args.rounds):
                for side, client in clients.items():
                    before = round_trips(counter)
                    done, seconds = client.run(path, duration=args.duration)
                    sent[side].append((round_trips(counter) - before) / done)
                    runs[side].append(done / seconds)
            out[request] = {"rps": runs, "round_trips": sent}
    finally:
        for client in clients.values():
            client.close()
        counter.close()
    return out


def ratio(mine: list[float], theirs: list[float]) -> float:
    """The median of the per-round ratios."""
    return statistics.median(a / b for a, b in zip(mine, theirs, strict=True))


def render(results: dict[str, Any]) -> str:
    """The Markdown tables for docs/BENCHMARKS.md."""
    rows = []
    for framework, ops in results["frameworks"].items():
        for request, m in ops.items():
            rps, sent = m["rps"], m["round_trips"]
            rows.append(
                [
                    framework,
                    PEERS[framework],
                    request,
                    f"{statistics.median(rps['peer']):,.0f}",
                    f"{statistics.median(rps['sessionhub']):,.0f}",
                    f"{ratio(rps['sessionhub'], rps['peer']):.2f}x",
                    "yes" if ratio(rps["sessionhub"], rps["peer"]) >= 1.0 else "NO",
                    f"{statistics.median(sent['peer']):.2f}",
                    f"{statistics.median(sent['sessionhub']):.3f}",
                    f"{ratio(rps['sessionhub'], rps['floor']):.2f}x",
                ]
            )
    headers = [
        "framework",
        "peer",
        "request",
        "peer req/s",
        "SessionHub req/s",
        "ratio",
        "at least as fast",
        "peer Redis round trips/request",
        "SessionHub Redis round trips/request",
        "SessionHub vs no session",
    ]
    text = table(headers, rows)
    cg = results.get("callgrind")
    if cg:
        rows = []
        for key, sides in cg.items():
            framework, request = key.split()
            hub, peer, floor = sides["sessionhub"], sides["peer"], sides.get("floor")
            rows.append(
                [
                    framework,
                    request,
                    f"{peer['per_request']:,.0f}",
                    f"{hub['per_request']:,.0f}",
                    "" if floor is None else f"{floor['per_request']:,.0f}",
                    f"{peer['per_request'] / hub['per_request']:.2f}x",
                    "" if floor is None else f"{floor['per_request'] / hub['per_request']:.2f}x",
                ]
            )
        headers = [
            "framework",
            "request",
            "peer instructions/request",
            "SessionHub",
            "no session",
            "peer / SessionHub",
            "no session / SessionHub",
        ]
        text += "\n\n" + table(headers, rows)
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per side")
    p.add_argument("--sessions", type=int, default=1000, help="signed-in sessions per side")
    p.add_argument("--only", nargs="*", choices=sorted(FRAMEWORKS), help="frameworks to run")
    p.add_argument(
        "--callgrind",
        nargs="*",
        choices=sorted(FRAMEWORKS),
        help="also count CPU instructions per request with valgrind for these frameworks",
    )
    p.add_argument("--callgrind-requests", type=int, default=500)
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every framework (or ``--only`` those), on one throw-away redis-server."""
    import tempfile

    import callgrind

    results: dict[str, Any] = {"sessions": args.sessions, "frameworks": {}}
    with redis_server() as server:
        for framework in args.only or list(FRAMEWORKS):
            results["frameworks"][framework] = measure(framework, server.url, args)
            print(framework, results["frameworks"][framework], flush=True)
        if args.callgrind:
            counted: dict[str, dict[str, Any]] = {}
            with tempfile.TemporaryDirectory() as tmp:
                for framework in args.callgrind:
                    for request in ("read", "read-modify"):
                        # The floor is counted for reads: what the targets compare it with.
                        sides = adapter_apps.SIDES if request == "read" else ("sessionhub", "peer")
                        counted[f"{framework} {request}"] = {
                            side: callgrind.instructions(
                                framework, side, request, server.url, args.callgrind_requests,
                                Path(tmp),
                            )
                            for side in sides
                        }  # fmt: skip
                        print(framework, request, counted[f"{framework} {request}"], flush=True)
            results["callgrind"] = counted
    return results


def main() -> None:
    print(render(run(parser().parse_args())))


if __name__ == "__main__":
    main()
