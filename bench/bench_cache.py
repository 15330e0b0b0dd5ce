"""Benchmark: the local session cache (issue "authenticated reads with no Redis round trip").

    python bench/bench_cache.py [--sessions 10000] [--duration 4] [--rounds 3]

Servers, one worker each, each on its own redis-server: the service (``GET /api/auth/me``) and
its no-session floor (``plain_app.py``, the same Starlette + uvicorn stack); and the apps of
``adapter_apps.py`` on Starlette (uvicorn), Flask and Django (gunicorn's sync worker), each with
SessionHub's adapter, with the session its users would pick instead (starsessions on Redis,
Flask-Session 0.8, Django's cache backend on RedisCache) and with no session at all. Every
server with sessions gets ``--sessions`` distinct signed-in sessions (the service's made with
the library, the apps' through their own ``/login``), and wrk cycles through all of them.

Each round measures the servers in turn. Right before a server is measured, a warm-up requests
every one of its sessions once (so SessionHub's local cache holds them all, as it would for
sessions in use); then wrk measures the read, then the read-modify-write. Figures are medians of
the rounds, ratios the medians of the per-round ratios. Redis counts the round trips
(``total_reads_processed``: one per request a client sends, whatever it carries) around each
measured run; for a read, SessionHub's cache hit rate is one minus its round trips per read.

Also measured: how long a logout on one service process takes to be refused by another, both
under wrk load; the Python heap per cached session; and, with valgrind, the CPU instructions per
request (``callgrind.py``), which this machine's load does not move.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import callgrind
from _common import (
    SECRET,
    free_port,
    process,
    python,
    redis_server,
    save_result,
    sessionhub_cmd,
    settings,
    table,
    write_config,
    wrk,
)
from adapter_apps import FRAMEWORKS, PATHS
from bench_adapters import session_cookie


def make_cookies(url: str, n: int, secret: str, name: str = "session") -> list[str]:
    """``n`` signed-in sessions made with the library, as Cookie header values."""
    from sessionhub.config import Settings
    from sessionhub.hub import SessionHub

    cfg = Settings.model_validate(
        {"SECRET_KEY": secret, "REDIS": {"URL": url}, "SESSION": {"TYPE": "redis"}}
    )
    hub = SessionHub(cfg)
    try:
        return [f"{name}={hub.create(f'user{i % 1000}')[1]}" for i in range(n)]
    finally:
        hub.close()


def round_trips(url: str) -> int:
    """Requests Redis has read from its clients so far; this INFO not counted."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("stats")["total_reads_processed"]) - 1
    finally:
        client.close()


# -- HTTP clients for set-up and warm-up -----------------------------------------------------


class Browser:
    """One keep-alive connection (reconnecting when the server closes it, as gunicorn's sync
    worker does after every response)."""

    def __init__(self, base: str) -> None:
        host, _, port = base.removeprefix("http://").partition(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=10)

    def get(self, path: str, cookie: str = "", method: str = "GET") -> tuple[int, list[str]]:
        headers = {"Cookie": cookie} if cookie else {}
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, headers=headers)
                resp = self.conn.getresponse()
                resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.conn.close()
                return resp.status, resp.headers.get_all("Set-Cookie") or []
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def _in_threads(base: str, jobs: list[str], work: Any, threads: int = 4) -> list[Any]:
    chunks = [jobs[i::threads] for i in range(threads)]

    def run(chunk: list[str]) -> list[Any]:
        browser = Browser(base)
        try:
            return [work(browser, job) for job in chunk]
        finally:
            browser.close()

    with ThreadPoolExecutor(threads) as pool:
        return [r for part in pool.map(run, chunks) for r in part]


def log_in(base: str, n: int, cookie_name: str) -> list[str]:
    """``n`` sessions, each through the app's own ``/login``."""

    def one(browser: Browser, _: str) -> str:
        status, set_cookies = browser.get(PATHS["login"])
        assert status == 200, status
        return session_cookie(set_cookies, cookie_name)

    return _in_threads(base, [""] * n, one)  # type: ignore[no-any-return]


def warm(base: str, path: str, cookies: list[str]) -> None:
    """Request every session once (the local cache then holds each)."""

    def one(browser: Browser, cookie: str) -> int:
        return browser.get(path, cookie)[0]

    statuses = _in_threads(base, cookies, one)
    bad = [s for s in statuses if s != 200]
    if bad:
        raise RuntimeError(f"warm-up of {base}{path}: {len(bad)} answers were not 200: {bad[:5]}")


# -- the servers -----------------------------------------------------------------------------


SERVERS: dict[str, tuple[str, str]] = {
    # name: (framework or service/floor, side)
    "service": ("service", "sessionhub"),
    "service-floor": ("floor", "floor"),
    "starlette-sessionhub": ("starlette", "sessionhub"),
    "starlette-starsessions": ("starlette", "peer"),
    "starlette-floor": ("starlette", "floor"),
    "flask-sessionhub": ("flask", "sessionhub"),
    "flask-session": ("flask", "peer"),
    "flask-floor": ("flask", "floor"),
    "django-sessionhub": ("django", "sessionhub"),
    "django-cache": ("django", "peer"),
    "django-floor": ("django", "floor"),
}


@contextlib.contextmanager
def server(name: str, tmp: Path, sessions: int) -> Iterator[dict[str, Any]]:
    """Start one server with its own redis-server and its sessions."""
    framework, side = SERVERS[name]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with redis_server() as redis:
        env = {"BENCH_REDIS_URL": redis.url, "BENCH_FRAMEWORK": framework, "BENCH_SIDE": side}
        paths = {"read": PATHS["read"], "read-modify": PATHS["read-modify"]}
        if framework == "service":
            cmd = sessionhub_cmd(write_config(Path(tempfile.mkdtemp(dir=tmp)), redis.url), port, 1)
            paths = {"read": "/api/auth/me"}
        elif framework == "floor":
            cmd = [python(), "plain_app.py", "--port", str(port)]
            paths = {"read": "/api/plain"}
        elif FRAMEWORKS[framework][1] == "asgi":
            cmd = [python(), "adapter_apps.py", "--port", str(port)]
        else:
            cmd = [python(), "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}"]
            cmd += ["--log-level", "warning", "adapter_apps:wsgi_app()"]
        with process(cmd, base + "/healthz", env):
            cookies: list[str] = []
            if framework == "service":
                cookies = make_cookies(redis.url, sessions, SECRET)
            elif side != "floor":
                cookies = log_in(base, sessions, FRAMEWORKS[framework][2])
            yield {"base": base, "paths": paths, "cookies": cookies, "redis": redis.url}


def measure(srv: dict[str, Any], path: str, duration: float, connections: int) -> dict[str, float]:
    """One wrk run cycling through the server's sessions, with Redis's round trips."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(srv["cookies"]))
    before = round_trips(srv["redis"])
    try:
        result = wrk(
            srv["base"] + path,
            duration=duration,
            connections=connections,
            cookies_file=f.name if srv["cookies"] else None,
        )
    finally:
        os.unlink(f.name)
    result["round_trips"] = (round_trips(srv["redis"]) - before) / max(1.0, result["requests"])
    return result


COMPARISONS = [
    # label, (server, request), (server, request), target
    ("service GET /api/auth/me vs no-session floor", ("service", "read"),
     ("service-floor", "read"), 0.8),
    ("Starlette middleware read vs no-session floor", ("starlette-sessionhub", "read"),
     ("starlette-floor", "read"), 0.8),
    ("Flask read vs Flask floor", ("flask-sessionhub", "read"), ("flask-floor", "read"), 0.8),
    ("Django read vs Django floor", ("django-sessionhub", "read"), ("django-floor", "read"), 0.8),
    ("Flask read-modify-write vs Flask-Session", ("flask-sessionhub", "read-modify"),
     ("flask-session", "read-modify"), 1.5),
    ("Starlette middleware read vs starsessions", ("starlette-sessionhub", "read"),
     ("starlette-starsessions", "read"), None),
    ("Starlette middleware read-modify-write vs starsessions",
     ("starlette-sessionhub", "read-modify"), ("starlette-starsessions", "read-modify"), None),
    ("Flask read vs Flask-Session", ("flask-sessionhub", "read"), ("flask-session", "read"), None),
    ("Django read vs Django's cache backend", ("django-sessionhub", "read"),
     ("django-cache", "read"), None),
    ("Django read-modify-write vs Django's cache backend", ("django-sessionhub", "read-modify"),
     ("django-cache", "read-modify"), None),
]  # fmt: skip


def throughput(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    with contextlib.ExitStack() as stack:
        up = {}
        for name in args.servers:
            up[name] = stack.enter_context(server(name, tmp, args.sessions))
            print(f"{name} up with {len(up[name]['cookies'])} sessions", flush=True)
        for round_ in range(args.rounds):
            for name, srv in up.items():
                paths = srv["paths"]
                if srv["cookies"]:
                    warm(srv["base"], paths["read"], srv["cookies"])
                elif round_ == 0:
                    measure(srv, paths["read"], 1.0, args.connections)  # imports, connections
                if name.endswith("-floor"):
                    paths = {"read": paths["read"]}  # the targets compare reads with the floor
                for request, path in paths.items():
                    r = measure(srv, path, args.duration, args.connections)
                    print({"server": name, "request": request, **r}, flush=True)
                    runs.setdefault((name, request), []).append(r)
    rows = []
    for (name, request), each in runs.items():
        rps = [r["rps"] for r in each]
        rows.append(
            {
                "server": name,
                "request": request,
                "rps": statistics.median(rps),
                "rounds": rps,
                "round_trips": statistics.median(r["round_trips"] for r in each),
                "p99_ms": statistics.median(r["p99_ms"] for r in each),
                "errors": sum(r["non2xx"] + r["socket_errors"] for r in each),
            }
        )
    ratios = []
    for label, ours, other, target in COMPARISONS:
        if ours in runs and other in runs:
            ratio = statistics.median(
                a["rps"] / b["rps"] for a, b in zip(runs[ours], runs[other], strict=True)
            )
            ratios.append({"comparison": label, "ratio": ratio, "target": target})
    return {"rows": rows, "ratios": ratios}


# -- revocation ------------------------------------------------------------------------------


def revocation(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """A logout on service A, then how long until service B refuses the cookie, both under wrk.

    B is polled on a keep-alive connection until it answers 401. Two bounds per sample, from the
    moment A answered the logout: the last poll B still served was sent *before* B dropped its
    copy (a lower bound), and the first refusal came back *after* it (an upper bound that
    includes that poll's wait behind the load on B). How long a request takes on B under that
    load is measured too, on the request that caches the session on B right before the logout.
    """
    with redis_server() as redis:
        config = write_config(Path(tempfile.mkdtemp(dir=tmp)), redis.url)
        ports = [free_port(), free_port()]
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        load = make_cookies(redis.url, args.sessions, SECRET)
        doomed = make_cookies(redis.url, args.revocations, SECRET)
        samples: list[tuple[float, float]] = []
        served: list[float] = []
        served_after = 0
        with contextlib.ExitStack() as stack:
            for port, base in zip(ports, bases, strict=True):
                stack.enter_context(process(sessionhub_cmd(config, port, 1), base + "/healthz", {}))
            for base in bases:
                warm(base, "/api/auth/me", load)
            seconds = args.revocations * 0.05 + 10
            srv = [{"base": b, "cookies": load, "redis": redis.url} for b in bases]
            loaders = [
                threading.Thread(target=measure, args=(s, "/api/auth/me", seconds, 16)) for s in srv
            ]
            for t in loaders:
                t.start()
            time.sleep(2)
            a, b = Browser(bases[0]), Browser(bases[1])
            for cookie in doomed:
                start = time.perf_counter()
                assert b.get("/api/auth/me", cookie)[0] == 200  # now cached on B
                served.append((time.perf_counter() - start) * 1000)
                a.get("/api/auth/logout", cookie, method="POST")
                origin = time.perf_counter()
                last_served = 0.0
                while True:
                    sent = time.perf_counter() - origin
                    status = b.get("/api/auth/me", cookie)[0]
                    if status == 401:
                        samples.append((last_served, time.perf_counter() - origin))
                        break
                    last_served = sent
                    if sent > 5:
                        raise RuntimeError("B kept serving a logged-out session for 5 s")
                served_after += sum(b.get("/api/auth/me", cookie)[0] != 401 for _ in range(3))
            a.close()
            b.close()
            for t in loaders:
                t.join()
    lower = sorted(s[0] * 1000 for s in samples)
    upper = sorted(s[1] * 1000 for s in samples)
    served.sort()

    def p(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(len(values) * q))]

    return {
        "samples": len(samples),
        "lower_p50_ms": p(lower, 0.5),
        "lower_p99_ms": p(lower, 0.99),
        "upper_p50_ms": p(upper, 0.5),
        "upper_p99_ms": p(upper, 0.99),
        "upper_max_ms": upper[-1],
        "served_after_refusal": served_after,
        "request_p50_ms": p(served, 0.5),
        "request_p99_ms": p(served, 0.99),
    }


def cache_memory(args: argparse.Namespace) -> dict[str, float]:
    """Bytes of Python heap per cached session (after two reads of each: the first caches the
    copy, the second its parse), and the hit rate of the second pass."""
    from sessionhub.hub import SessionHub

    with redis_server() as redis:
        cookies = [c.partition("=")[2] for c in make_cookies(redis.url, args.sessions, SECRET)]
        hub = SessionHub(settings(redis.url))
        try:
            core = hub.manager.core
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            for cookie in cookies:
                hub.open(cookie)
            hits, misses = core.cache_hits, core.cache_misses
            for cookie in cookies:
                hub.open(cookie)
            after = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            hit_rate = (core.cache_hits - hits) / max(
                1, core.cache_hits - hits + core.cache_misses - misses
            )
        finally:
            hub.close()
    return {"bytes_per_session": (after - before) / len(cookies), "second_pass_hit_rate": hit_rate}


CALLGRIND = [
    # framework, side, request
    ("starlette", "sessionhub", "read"),
    ("starlette", "floor", "read"),
    ("starlette", "peer", "read"),
    ("flask", "sessionhub", "read"),
    ("flask", "floor", "read"),
    ("flask", "sessionhub", "read-modify"),
    ("flask", "peer", "read-modify"),
]


def instructions(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    counted: dict[str, Any] = {}
    with redis_server() as redis:
        for framework, side, request in CALLGRIND:
            key = f"{framework} {side} {request}"
            counted[key] = callgrind.instructions(
                framework, side, request, redis.url, args.callgrind_requests, tmp
            )
            print({"callgrind": key, **counted[key]}, flush=True)
    return counted


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.time()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        result: dict[str, Any] = {
            "sessions": args.sessions,
            "duration_s": args.duration,
            "rounds": args.rounds,
        }
        if "http" not in args.skip:
            result["http"] = throughput(args, tmp)
        if "revocation" not in args.skip:
            result["revocation"] = revocation(args, tmp)
        if "memory" not in args.skip:
            result["memory"] = cache_memory(args)
        if "callgrind" not in args.skip:
            result["callgrind"] = instructions(args, tmp)
    result["minutes"] = (time.time() - started) / 60
    save_result("cache", result)
    return result


def render(result: dict[str, Any]) -> str:
    parts = []
    h = result.get("http")
    if h:
        rows = [
            [
                r["server"],
                r["request"],
                f"{r['rps']:,.0f}",
                " / ".join(f"{x:,.0f}" for x in r["rounds"]),
                f"{r['round_trips']:.3f}",
                f"{r['p99_ms']:.1f}",
                f"{r['errors']:.0f}",
            ]
            for r in h["rows"]
        ]
        headers = ["server (1 worker)", "request", "req/s (median)", "each round"]
        parts.append(table([*headers, "Redis round trips/request", "p99 ms", "errors"], rows))
        ratio_rows = [
            [
                r["comparison"],
                f"{r['ratio']:.2f}x",
                "(context)" if r["target"] is None else f">= {r['target']}x",
                "" if r["target"] is None else ("yes" if r["ratio"] >= r["target"] else "NO"),
            ]
            for r in h["ratios"]
        ]
        parts.append(table(["comparison", "ratio", "target", "met"], ratio_rows))
        trips = {(r["server"], r["request"]): r["round_trips"] for r in h["rows"]}
        other = []
        for name in ("service", "starlette-sessionhub", "flask-sessionhub", "django-sessionhub"):
            if (name, "read") in trips:
                t = trips[(name, "read")]
                other.append([f"{name}: round trips per read / cache hit rate", f"{t:.4f} / "
                              f"{1 - t:.4f}", "< 0.05"])  # fmt: skip
        parts.append(table(["measure", "value", "target"], other))
    rev, mem, cg = result.get("revocation"), result.get("memory"), result.get("callgrind")
    other = []
    if mem:
        other.append(
            ["memory per cached session (Python heap)", f"{mem['bytes_per_session']:,.0f} B", ""]
        )
        other.append(
            ["cache hit rate, second pass in process", f"{mem['second_pass_hit_rate']:.4f}", ""]
        )
    if rev:
        other.append(
            [
                f"logout on A until B refuses it, upper bound: p50 / p99 / max ({rev['samples']} "
                "samples)",
                f"{rev['upper_p50_ms']:.1f} / {rev['upper_p99_ms']:.1f} / "
                f"{rev['upper_max_ms']:.1f} ms",
                "p99 <= 50 ms",
            ]
        )
        other.append(
            [
                "same, lower bound (the last poll B served was sent this long after): p50 / p99",
                f"{rev['lower_p50_ms']:.1f} / {rev['lower_p99_ms']:.1f} ms",
                "",
            ]
        )
        other.append(["served by B after its first refusal", str(rev["served_after_refusal"]), "0"])
        if "request_p99_ms" in rev:
            other.append([
                "one request on B under the same load (the one that cached the session): p50 / p99",
                f"{rev['request_p50_ms']:.1f} / {rev['request_p99_ms']:.1f} ms", "",
            ])  # fmt: skip
    if other:
        parts.append(table(["measure", "value", "target"], other))
    if cg:
        rows = [
            [key, f"{v['per_request']:,.0f}", f"{v['hit_rate']:.4f}" if "hit_rate" in v else ""]
            for key, v in cg.items()
        ]
        parts.append(table(["in process: framework, side, request", "instructions/request",
                            "cache hit rate"], rows))  # fmt: skip
        ratios = []
        pairs = [
            ("Starlette read: no session / SessionHub", "starlette floor read",
             "starlette sessionhub read"),
            ("Starlette read: starsessions / SessionHub", "starlette peer read",
             "starlette sessionhub read"),
            ("Flask read: no session / SessionHub", "flask floor read", "flask sessionhub read"),
            ("Flask read-modify-write: Flask-Session / SessionHub", "flask peer read-modify",
             "flask sessionhub read-modify"),
        ]  # fmt: skip
        for label, a, b in pairs:
            if a in cg and b in cg:
                ratios.append([label, f"{cg[a]['per_request'] / cg[b]['per_request']:.2f}x"])
        parts.append(table(["instructions ratio (higher: SessionHub cheaper)", "ratio"], ratios))
    return "\n\n".join(parts)


def headline(result: dict[str, Any]) -> list[str]:
    """The document's headline lines for this benchmark's targets."""
    lines = []
    for r in result.get("http", {}).get("ratios", []):
        if r["target"] is not None:
            met = "met" if r["ratio"] >= r["target"] else "MISSED"
            ratio = f"**{r['ratio']:.2f}x** (target {r['target']}x, {met})"
            lines.append(f"- {r['comparison']}, 1 worker: {ratio}")
    for row in result.get("http", {}).get("rows", []):
        if (row["server"], row["request"]) == ("service", "read"):
            t = row["round_trips"]
            lines.append(
                f"- Redis round trips per authenticated read, warm cache: **{t:.4f}** (target "
                f"< 0.05, {'met' if t < 0.05 else 'MISSED'})"
            )
    rev = result.get("revocation")
    if rev:
        met = "met" if rev["upper_p99_ms"] <= 50 else "MISSED"
        lines.append(
            f"- logout on one service refused by another, p99 (upper bound): "
            f"**{rev['upper_p99_ms']:.1f} ms** (target <= 50 ms, {met})"
        )
    return lines


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sessions", type=int, default=10_000)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--revocations", type=int, default=200)
    p.add_argument("--callgrind-requests", type=int, default=500)
    p.add_argument("--servers", nargs="*", default=list(SERVERS), choices=list(SERVERS))
    p.add_argument(
        "--skip", nargs="*", default=[], choices=["http", "revocation", "memory", "callgrind"]
    )
    return p


def main() -> None:
    print(render(run(parser().parse_args())))


if __name__ == "__main__":
    sys.exit(main())
