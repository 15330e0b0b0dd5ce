"""Benchmark: the local session cache (issue "authenticated reads with no Redis round trip").

    python bench/bench_cache.py [--sessions 10000] [--duration 4] [--rounds 3]

One worker per server; wrk cycles through ``--sessions`` distinct signed-in sessions for every
SessionHub server (each made with the library beforehand, so every cookie is a real session).
Servers are measured in turn, round after round; figures are medians, ratios the median of the
per-round ratios. The peers (Flask-Session, starsessions) are measured on one session: their
cookies cannot be made outside their apps, and one session only helps them.

Measured:

* req/s: service ``GET /api/auth/me``, the ASGI middleware's read, Flask read and
  read-modify-write, against their no-session floors and Flask-Session;
* Redis round trips per authenticated read (EVALSHA calls over requests) with a warm cache, and
  the cache's hit rate;
* the time until a logout on instance A is refused by instance B (two service processes, both
  under wrk load), p50 / p99;
* memory per cached session (tracemalloc, in process);
* CPU instructions per request (valgrind callgrind, in-process ASGI requests) of SessionHub's
  middleware read, the floor and starsessions.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import (
    SECRET,
    free_port,
    login,
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

ASGI_SECRET = "bench-secret-key-0123456789"


def make_cookies(url: str, n: int, secret: str, name: str = "session") -> list[str]:
    """``n`` signed-in sessions made with the library, as Cookie header values."""
    from sessionhub.config import Settings
    from sessionhub.hub import SessionHub

    cfg = Settings.model_validate(
        {"SECRET_KEY": secret, "REDIS": {"URL": url}, "SESSION": {"TYPE": "redis"}}
    )
    hub = SessionHub(cfg)
    try:
        # The Flask app reads user_id and created_at from the data, as its own login stores them.
        data = {"user_id": "alice", "created_at": 0}
        return [f"{name}={hub.create(f'user{i % 1000}', data=data)[1]}" for i in range(n)]
    finally:
        hub.close()


def script_calls(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        stats: dict[str, Any] = client.info("commandstats")
    finally:
        client.close()
    return sum(int(stats.get(k, {}).get("calls", 0)) for k in ("cmdstat_evalsha", "cmdstat_eval"))


@contextlib.contextmanager
def server(kind: str, tmp: Path, sessions: int) -> Iterator[dict[str, Any]]:
    """Start one server with its own redis-server; yield its URL, path, method and cookies."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with redis_server() as redis:
        env: dict[str, str] = {"BENCH_REDIS_URL": redis.url}
        method, path, cookies = "GET", "/api/auth/me", None
        if kind == "service":
            cmd = sessionhub_cmd(write_config(Path(tempfile.mkdtemp(dir=tmp)), redis.url), port, 1)
            cookies = make_cookies(redis.url, sessions, SECRET)
        elif kind == "floor":
            cmd, path = [python(), "plain_app.py", "--port", str(port)], "/api/plain"
        elif kind.startswith("asgi-"):
            env["BENCH_ASGI"] = kind.removeprefix("asgi-")
            cmd, path = [python(), "asgi_app.py", "--port", str(port)], "/api/me"
            if kind == "asgi-sessionhub":
                cookies = make_cookies(redis.url, sessions, ASGI_SECRET)
        else:  # flask-<backend>-<read|rmw>
            _, backend, what = kind.split("-")
            env["BENCH_FLASK_BACKEND"] = {"fs": "flask-session"}.get(backend, backend)
            cmd = [python(), "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}"]
            cmd += ["--log-level", "warning", "flask_app:app"]
            if what == "rmw":
                method, path = "POST", "/api/session/extend"
            if backend == "sessionhub":
                cookies = make_cookies(redis.url, sessions, SECRET)
        with process(cmd, base + "/healthz", env):
            if cookies is None and kind not in ("floor", "asgi-floor", "flask-floor-read"):
                cookies = [login(base)] if not kind.startswith("asgi-") else None
            if kind == "asgi-starsessions":
                cookies = [starsessions_cookie(redis.url)]
            yield {"url": base + path, "method": method, "cookies": cookies, "redis": redis.url}


def starsessions_cookie(url: str) -> str:
    """A starsessions session signed in as alice, written the way its Redis store keeps it."""
    import json

    import redis as redis_py

    client = redis_py.Redis.from_url(url)
    try:
        client.set("starsessions.bench", json.dumps({"user_id": "alice"}), ex=7200)
    finally:
        client.close()
    return "session=bench"


def measure(up: dict[str, Any], duration: float, connections: int) -> dict[str, float]:
    cookies = up["cookies"]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(cookies or []))
    try:
        return wrk(
            up["url"],
            duration=duration,
            connections=connections,
            method=up["method"],
            cookies_file=f.name if cookies else None,
        )
    finally:
        os.unlink(f.name)


HTTP_KINDS = [
    "service",
    "floor",
    "asgi-sessionhub",
    "asgi-floor",
    "asgi-starsessions",
    "flask-sessionhub-read",
    "flask-floor-read",
    "flask-fs-read",
    "flask-sessionhub-rmw",
    "flask-fs-rmw",
]

COMPARISONS = [
    ("service GET /api/auth/me vs no-session floor", "service", "floor", 0.8),
    ("ASGI middleware read vs no-session floor", "asgi-sessionhub", "asgi-floor", 0.8),
    ("ASGI middleware read vs starsessions", "asgi-sessionhub", "asgi-starsessions", None),
    ("Flask read vs Flask floor", "flask-sessionhub-read", "flask-floor-read", 0.8),
    ("Flask read vs Flask-Session", "flask-sessionhub-read", "flask-fs-read", None),
    ("Flask read-modify-write vs Flask-Session", "flask-sessionhub-rmw", "flask-fs-rmw", 1.5),
]


def http(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {}
    trips: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        up = {k: stack.enter_context(server(k, tmp, args.sessions)) for k in HTTP_KINDS}
        for srv in up.values():  # warm-up: imports, connections, and every cookie cached
            measure(srv, max(2.0, args.duration / 2), args.connections)
        for _ in range(args.rounds):
            for kind, srv in up.items():
                before = script_calls(srv["redis"])
                r = measure(srv, args.duration, args.connections)
                r["scripts"] = script_calls(srv["redis"]) - before
                print({"server": kind, **r}, flush=True)
                runs.setdefault(kind, []).append(r)
    rows = []
    for kind, each in runs.items():
        rps = [r["rps"] for r in each]
        requests = sum(r["requests"] for r in each)
        trips[kind] = sum(r["scripts"] for r in each) / max(1.0, requests)
        rows.append({"server": kind, "rps": statistics.median(rps), "rounds": rps, **each[0]})
    ratios = []
    for label, ours, other, target in COMPARISONS:
        mine, theirs = runs[ours], runs[other]
        ratio = statistics.median(a["rps"] / b["rps"] for a, b in zip(mine, theirs, strict=True))
        ratios.append({"comparison": label, "ratio": ratio, "target": target})
    return {"rows": rows, "ratios": ratios, "round_trips_per_read": trips}


def _get(url: str, cookie: str) -> int:
    req = urllib.request.Request(url, headers={"Cookie": cookie})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _post(url: str, cookie: str) -> int:
    req = urllib.request.Request(url, data=b"", headers={"Cookie": cookie}, method="POST")  # noqa: S310
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback
        return int(resp.status)


def revocation(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Logout on A, then how long until B refuses the cookie, with both under wrk load."""
    with redis_server() as redis:
        config = write_config(Path(tempfile.mkdtemp(dir=tmp)), redis.url)
        ports = [free_port(), free_port()]
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        load = make_cookies(redis.url, args.sessions, SECRET)
        doomed = make_cookies(redis.url, args.revocations, SECRET)
        with contextlib.ExitStack() as stack:
            for port, base in zip(ports, bases, strict=True):
                stack.enter_context(process(sessionhub_cmd(config, port, 1), base + "/healthz", {}))
            loaders = [
                threading.Thread(
                    target=measure,
                    args=(
                        {"url": b + "/api/auth/me", "method": "GET", "cookies": load},
                        args.revocations * 0.05 + 10,
                        16,
                    ),
                )
                for b in bases
            ]
            for t in loaders:
                t.start()
            time.sleep(2)
            delays = []
            for cookie in doomed:
                assert _get(bases[1] + "/api/auth/me", cookie) == 200  # cached on B
                _post(bases[0] + "/api/auth/logout", cookie)
                start = time.perf_counter()
                while _get(bases[1] + "/api/auth/me", cookie) != 401:
                    if time.perf_counter() - start > 5:
                        raise RuntimeError("B kept serving a logged-out session for 5 s")
                delays.append((time.perf_counter() - start) * 1000)
            for t in loaders:
                t.join()
    delays.sort()
    return {
        "samples": len(delays),
        "p50_ms": delays[len(delays) // 2],
        "p99_ms": delays[min(len(delays) - 1, int(len(delays) * 0.99))],
        "max_ms": delays[-1],
    }


def cache_memory(args: argparse.Namespace) -> dict[str, float]:
    """Bytes of Python heap per cached session, and the hit rate of a second pass."""
    from sessionhub.hub import SessionHub

    with redis_server() as redis:
        cookies = make_cookies(redis.url, args.sessions, SECRET)
        hub = SessionHub(settings(redis.url))
        try:
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            for c in cookies:
                hub.open(c.partition("=")[2])
            after = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            core = hub.manager.core
            hits, misses = core.cache_hits, core.cache_misses
            for c in cookies:
                hub.open(c.partition("=")[2])
            hit_rate = (core.cache_hits - hits) / max(
                1, core.cache_hits - hits + core.cache_misses - misses
            )
        finally:
            hub.close()
    return {"bytes_per_session": (after - before) / len(cookies), "second_pass_hit_rate": hit_rate}


CALLGRIND_RUN = """
import sys
sys.path.insert(0, {here!r})
from asgi_app import run_in_process
run_in_process({kind!r}, {url!r}, {cookie!r}, {n})
"""


def instructions(kind: str, url: str, cookie: str, n: int, tmp: Path) -> int:
    out = tmp / f"callgrind.{kind}.{n}"
    code = CALLGRIND_RUN.format(
        here=str(Path(__file__).parent), kind=kind, url=url, cookie=cookie, n=n
    )
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", python(), "-c", code],
        check=True,
        capture_output=True,
    )
    for line in out.read_text().splitlines():
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError("no totals in callgrind output")


def callgrind(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    """Instructions per request: the difference of runs of 2n and n requests, over n."""
    per: dict[str, float] = {}
    with redis_server() as redis:
        cookies = {
            "sessionhub": make_cookies(redis.url, 1, ASGI_SECRET)[0],
            "floor": "session=x",
            "starsessions": starsessions_cookie(redis.url),
        }
        for kind, cookie in cookies.items():
            n = args.callgrind_requests
            small = instructions(kind, redis.url, cookie, n, tmp)
            large = instructions(kind, redis.url, cookie, 2 * n, tmp)
            per[kind] = (large - small) / n
            print({"callgrind": kind, "instructions_per_request": per[kind]}, flush=True)
    return per


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        result: dict[str, Any] = {"sessions": args.sessions, "duration_s": args.duration}
        result["rounds"] = args.rounds
        result["http"] = http(args, tmp)
        result["revocation"] = revocation(args, tmp)
        result["memory"] = cache_memory(args)
        result["callgrind"] = callgrind(args, tmp)
    save_result("cache", result)
    return result


def render(result: dict[str, Any]) -> str:
    h = result["http"]
    rows = [
        [r["server"], f"{r['rps']:,.0f}", " / ".join(f"{x:,.0f}" for x in r["rounds"])]
        for r in h["rows"]
    ]
    text = table(["server (1 worker)", "req/s (median)", "each round"], rows)
    ratio_rows = [
        [
            r["comparison"],
            f"{r['ratio']:.2f}x",
            "(context)" if r["target"] is None else f">= {r['target']}x",
            "" if r["target"] is None else ("yes" if r["ratio"] >= r["target"] else "NO"),
        ]
        for r in h["ratios"]
    ]
    text += "\n\n" + table(["comparison", "ratio", "target", "met"], ratio_rows)
    trips = h["round_trips_per_read"]
    rev, mem, cg = result["revocation"], result["memory"], result["callgrind"]
    other = [
        [
            "Redis round trips per authenticated read, service (warm)",
            f"{trips['service']:.4f}",
            "< 0.05",
        ],
        ["same, ASGI middleware", f"{trips['asgi-sessionhub']:.4f}", "< 0.05"],
        ["same, Flask read", f"{trips['flask-sessionhub-read']:.4f}", "< 0.05"],
        ["cache hit rate, service (1 - round trips per read)", f"{1 - trips['service']:.4f}", ""],
        ["cache hit rate, second pass in process", f"{mem['second_pass_hit_rate']:.4f}", ""],
        ["memory per cached session (Python heap)", f"{mem['bytes_per_session']:,.0f} B", ""],
        [
            f"logout on A refused by B, p50 / p99 / max ({rev['samples']} samples)",
            f"{rev['p50_ms']:.1f} / {rev['p99_ms']:.1f} / {rev['max_ms']:.1f} ms",
            "p99 <= 50 ms",
        ],
        ["instructions per request, SessionHub ASGI read", f"{cg['sessionhub']:,.0f}", ""],
        ["instructions per request, floor", f"{cg['floor']:,.0f}", ""],
        ["instructions per request, starsessions", f"{cg['starsessions']:,.0f}", ""],
        ["instructions: SessionHub / floor", f"{cg['sessionhub'] / cg['floor']:.2f}x", ""],
        [
            "instructions: SessionHub / starsessions",
            f"{cg['sessionhub'] / cg['starsessions']:.2f}x",
            "",
        ],
    ]
    return text + "\n\n" + table(["measure", "value", "target"], other)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sessions", type=int, default=10_000)
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--revocations", type=int, default=200)
    p.add_argument("--callgrind-requests", type=int, default=500)
    args = p.parse_args()
    print(render(run(args)))


if __name__ == "__main__":
    sys.exit(main())
