"""Benchmark 3: HTTP throughput of an authenticated read and a read-modify request.

    python bench/bench_http.py [--duration 6] [--connections 32] [--workers 1 2]

Load generator: wrk (Debian package), one thread, keep-alive connections. Servers:

* SessionHub's service (``sessionhub serve``: Starlette + uvicorn), ``GET /api/auth/me`` (read,
  slides the expiry) and ``POST /api/session/extend`` (read, then write the new expiry);
* the peer: ``bench/flask_app.py`` with Flask-Session 0.8 (Redis interface) under gunicorn with
  the same worker count (default sync workers, as most deployments run it); ``/api/auth/me``
  reads the session (Flask-Session re-saves it: permanent sessions refresh on each request) and
  ``/api/session/extend`` sets a key;
* the floor: ``bench/plain_app.py``, the same Starlette + uvicorn stack with no session at all;
* the same Flask app on SessionHub's Flask integration, when this build has one.

Each server gets its own fresh redis-server.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import (
    free_port,
    login,
    process,
    python,
    redis_server,
    save_result,
    sessionhub_cmd,
    table,
    write_config,
    wrk,
)
from flask_app import sessionhub_flask_extension

ENDPOINTS = {"read": ("GET", "/api/auth/me"), "read-modify": ("POST", "/api/session/extend")}


@contextlib.contextmanager
def server(kind: str, workers: int, tmp: Path) -> Iterator[tuple[str, str | None]]:
    """Start one server under test; yield its base URL and a logged-in Cookie header."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with redis_server() as redis:
        if kind == "sessionhub":
            cfg_dir = Path(tempfile.mkdtemp(dir=tmp))
            cmd = sessionhub_cmd(write_config(cfg_dir, redis.url), port, workers)
            env: dict[str, str] = {}
        elif kind == "floor":
            cmd = [python(), "plain_app.py", "--port", str(port), "--workers", str(workers)]
            env = {}
        else:
            backend = "flask-session" if kind == "flask-session" else "sessionhub"
            cmd = [python(), "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}"]
            cmd += ["--log-level", "warning", "flask_app:app"]
            env = {"BENCH_REDIS_URL": redis.url, "BENCH_FLASK_BACKEND": backend}
        with process(cmd, base + "/healthz", env):
            cookie = None if kind == "floor" else login(base)
            yield base, cookie


def run(args: argparse.Namespace) -> dict[str, Any]:
    kinds = ["sessionhub", "floor", "flask-session"]
    flask_integration = sessionhub_flask_extension() is not None
    if flask_integration:
        kinds.append("flask-sessionhub")
    else:
        print("SessionHub Flask integration: not available in this build (skipped)")
    kinds = [k for k in kinds if not args.servers or k in args.servers]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            for kind in kinds:
                with server(kind, workers, Path(tmp)) as (base, cookie):
                    for what, (method, path) in ENDPOINTS.items():
                        if kind == "floor":
                            method, path = "GET", "/api/plain"
                        r = wrk(
                            base + path,
                            duration=args.duration,
                            connections=args.connections,
                            cookie=cookie,
                            method=method,
                        )
                        row = {"server": kind, "workers": workers, "request": what, **r}
                        print(row)
                        rows.append(row)
    result = {
        "duration_s": args.duration,
        "connections": args.connections,
        "flask_integration": flask_integration,
        "rows": rows,
    }
    save_result("http", result)
    return result


def ratios(result: dict[str, Any]) -> list[dict[str, Any]]:
    """SessionHub against the peer and the floor, per worker count and request."""
    by = {(r["server"], r["workers"], r["request"]): r["rps"] for r in result["rows"]}
    out = []
    for (server, workers, what), rps in sorted(by.items()):
        if server != "sessionhub":
            continue
        floor = by.get(("floor", workers, what))
        peer = by.get(("flask-session", workers, what))
        out.append(
            {
                "comparison": f"service vs Flask-Session, {what}, {workers}w",
                "ratio": rps / peer if peer else None,
                "target": 3.0,
            }
        )
        out.append(
            {
                "comparison": f"service vs framework floor, {what}, {workers}w",
                "ratio": rps / floor if floor else None,
                "target": 0.6,
            }
        )
        integ = by.get(("flask-sessionhub", workers, what))
        if integ is not None and peer:
            out.append(
                {
                    "comparison": f"Flask + SessionHub vs Flask-Session, {what}, {workers}w",
                    "ratio": integ / peer,
                    "target": 1.3,
                }
            )
    return out


def render(result: dict[str, Any]) -> str:
    rows = [
        [
            r["server"],
            r["workers"],
            r["request"],
            r["rps"],
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            int(r["non2xx"] + r["socket_errors"]),
        ]
        for r in result["rows"]
    ]
    text = table(["server", "workers", "request", "req/s", "p50 ms", "p99 ms", "errors"], rows)
    ratio_rows = [
        [
            r["comparison"],
            "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}x",
            f">= {r['target']}x",
            "n/a" if r["ratio"] is None else ("yes" if r["ratio"] >= r["target"] else "NO"),
        ]
        for r in ratios(result)
    ]
    text += "\n\n" + table(["comparison", "ratio", "target", "met"], ratio_rows)
    if not result["flask_integration"]:
        text += "\n\nSessionHub Flask integration: not available in this build."
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--duration", type=float, default=6.0, help="seconds per wrk run")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument(
        "--servers", nargs="+", help="only these (sessionhub, floor, flask-session, ...)"
    )
    return p


def main() -> None:
    print(render(run(parser().parse_args())))


if __name__ == "__main__":
    main()
