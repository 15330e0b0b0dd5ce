"""Benchmark 3: HTTP throughput of an authenticated read and a read-modify request.

    python bench/bench_http.py [--duration 6] [--connections 32] [--workers 1 2]

Load generator: wrk (Debian package), one thread, keep-alive connections. Servers:

* SessionHub's service (``sessionhub serve``: Starlette + uvicorn), ``GET /api/auth/me`` (read,
  slides the expiry) and ``POST /api/session/extend`` (read, then write the new expiry); and the
  same service with ``METRICS.ENABLED: false`` (``sessionhub-nometrics``), measured in the same
  rounds, for what counting costs;
* the peer: ``bench/flask_app.py`` with Flask-Session 0.8 (Redis interface) under gunicorn with
  the same worker count (default sync workers, as most deployments run it); ``/api/auth/me``
  reads the session (Flask-Session re-saves it: permanent sessions refresh on each request) and
  ``/api/session/extend`` sets a key;
* the floor: ``bench/plain_app.py``, the same Starlette + uvicorn stack with no session at all;
* the same Flask app on SessionHub's Flask integration, when this build has one;
* the Flask floor: the same Flask app under gunicorn with no session at all, the most any Flask
  session back end could reach.

Each server gets its own fresh redis-server. All servers of one worker count run side by side
(idle while another is measured) and are measured in turn, round after round, after a warm-up:
a slow spell of the shared machine then hits every server alike. Requests/s is the median over
the rounds; each ratio is the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
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
        if kind in ("sessionhub", "sessionhub-nometrics"):
            cfg_dir = Path(tempfile.mkdtemp(dir=tmp))
            cmd = sessionhub_cmd(write_config(cfg_dir, redis.url), port, workers)
            metrics = "false" if kind == "sessionhub-nometrics" else "true"
            env: dict[str, str] = {"SESSIONHUB_METRICS__ENABLED": metrics}
        elif kind == "floor":
            cmd = [python(), "plain_app.py", "--port", str(port), "--workers", str(workers)]
            env = {}
        else:
            backend = kind.removeprefix("flask-")  # session, sessionhub or floor
            backend = "flask-session" if backend == "session" else backend
            cmd = [python(), "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}"]
            cmd += ["--log-level", "warning", "flask_app:app"]
            env = {"BENCH_REDIS_URL": redis.url, "BENCH_FLASK_BACKEND": backend}
        with process(cmd, base + "/healthz", env):
            cookie = None if kind in NO_SESSION else login(base)
            yield base, cookie


NO_SESSION = ("floor", "flask-floor")

COMPARISONS = [
    # (label, server, against, target): SessionHub's figure over the other's, same round
    ("service vs Flask-Session", "sessionhub", "flask-session", 3.0),
    ("service vs framework floor", "sessionhub", "floor", 0.6),
    ("Flask + SessionHub vs Flask-Session", "flask-sessionhub", "flask-session", 1.3),
    ("Flask floor (no session) vs Flask-Session", "flask-floor", "flask-session", None),
    ("service, metrics on vs off", "sessionhub", "sessionhub-nometrics", 0.95),
]


def _measure(base: str, cookie: str | None, kind: str, what: str, **wrk_args: Any) -> Any:
    method, path = ENDPOINTS[what]
    if kind == "floor":
        method, path = "GET", "/api/plain"
    return wrk(base + path, cookie=cookie, method=method, **wrk_args)


def run(args: argparse.Namespace) -> dict[str, Any]:
    kinds = ["sessionhub", "sessionhub-nometrics", "floor", "flask-session", "flask-floor"]
    flask_integration = sessionhub_flask_extension() is not None
    if flask_integration:
        kinds.append("flask-sessionhub")
    else:
        print("SessionHub Flask integration: not available in this build (skipped)")
    kinds = [k for k in kinds if not args.servers or k in args.servers]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            with contextlib.ExitStack() as stack:
                up = {k: stack.enter_context(server(k, workers, Path(tmp))) for k in kinds}
                runs: dict[tuple[str, str], list[dict[str, float]]] = {}
                for kind, (base, cookie) in up.items():
                    for what in ENDPOINTS:  # warm-up: imports, caches, connections
                        _measure(base, cookie, kind, what, duration=1, connections=args.connections)
                for _ in range(args.rounds):
                    for kind, (base, cookie) in up.items():
                        for what in ENDPOINTS:
                            r = _measure(
                                base,
                                cookie,
                                kind,
                                what,
                                duration=args.duration,
                                connections=args.connections,
                            )
                            print({"server": kind, "workers": workers, "request": what, **r})
                            runs.setdefault((kind, what), []).append(r)
            for (kind, what), each in runs.items():
                median = sorted(each, key=lambda r: r["rps"])[len(each) // 2]
                row = {"server": kind, "workers": workers, "request": what, **median}
                row["rounds_rps"] = [r["rps"] for r in each]
                row["non2xx"] = sum(r["non2xx"] for r in each)
                row["socket_errors"] = sum(r["socket_errors"] for r in each)
                rows.append(row)
    result = {
        "duration_s": args.duration,
        "rounds": args.rounds,
        "connections": args.connections,
        "flask_integration": flask_integration,
        "rows": rows,
    }
    save_result("http", result)
    return result


def ratios(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each comparison per worker count and request: the median of its per-round ratios."""
    by = {(r["server"], r["workers"], r["request"]): r for r in result["rows"]}
    out = []
    for workers in sorted({r["workers"] for r in result["rows"]}):
        for what in ENDPOINTS:
            for label, ours, other, target in COMPARISONS:
                a, b = by.get((ours, workers, what)), by.get((other, workers, what))
                if a is None or b is None:
                    continue
                mine, theirs = a.get("rounds_rps", [a["rps"]]), b.get("rounds_rps", [b["rps"]])
                ratio = statistics.median(x / y for x, y in zip(mine, theirs, strict=True))
                out.append(
                    {"comparison": f"{label}, {what}, {workers}w", "ratio": ratio, "target": target}
                )
    return out


def render(result: dict[str, Any]) -> str:
    rows = [
        [
            r["server"],
            r["workers"],
            r["request"],
            r["rps"],
            " / ".join(f"{x:,.0f}" for x in r.get("rounds_rps", [r["rps"]])),
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            int(r["non2xx"] + r["socket_errors"]),
        ]
        for r in result["rows"]
    ]
    headers = ["server", "workers", "request", "req/s (median)", "each round", "p50 ms", "p99 ms"]
    text = table([*headers, "errors"], rows)
    ratio_rows = [
        [
            r["comparison"],
            f"{r['ratio']:.2f}x",
            "(context)" if r["target"] is None else f">= {r['target']}x",
            "" if r["target"] is None else ("yes" if r["ratio"] >= r["target"] else "NO"),
        ]
        for r in ratios(result)
    ]
    text += "\n\n" + table(["comparison", "ratio", "target", "met"], ratio_rows)
    if not result["flask_integration"]:
        text += "\n\nSessionHub Flask integration: not available in this build."
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--duration", type=float, default=4.0, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=5, help="measurements of each server")
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
