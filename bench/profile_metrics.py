"""What metrics cost a request, in instructions: the service under callgrind, metrics on and off.

    python bench/profile_metrics.py [--requests 400 1200] [--multiprocess] [--cprofile on]

Machine noise does not enter an instruction count. For each endpoint (``GET /api/auth/me`` and
``POST /api/session/extend``, as in ``bench_metrics.py``) and each of metrics on and off, a child
process runs the app straight through ASGI under ``valgrind --tool=callgrind``: it logs in,
warms up, then makes a fixed number of sequential requests. It runs twice, with two request
counts; the difference of their instruction totals divided by the difference of the counts is
the cost of one request, with the start-up (imports, app, login, warm-up) cancelled out. Redis
runs outside valgrind, so its work is not counted. Background reads (``METRICS.REFRESH_INTERVAL``)
are pushed beyond the run: they are off the request path, and under valgrind's slowdown their
number would follow the wall clock, not the requests.

``--cprofile on|off`` instead runs one child under cProfile (no valgrind) and prints the
functions by their own time: where the instructions go, by Python function.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import pstats
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import redis_server, save_result, settings_dict, table
from bench_metrics import ENDPOINTS, call, login

WARM_UP = 200


async def child(
    url: str, metrics: bool, what: str, requests: int, profile: Path | None, flush: float
) -> None:
    """Log in, warm up, then make ``requests`` requests of kind ``what`` (the measured part)."""
    from sessionhub.config import Settings
    from sessionhub.service import metrics as metrics_module
    from sessionhub.service.app import create_app

    metrics_module.FLUSH_INTERVAL = flush
    settings = Settings.model_validate(
        {
            **settings_dict(url),
            "METRICS": {"ENABLED": metrics, "REFRESH_INTERVAL": 86400},
        }
    )
    app = create_app(settings)
    method, path = ENDPOINTS[what]
    async with app.router.lifespan_context(app):
        cookie = await login(app)
        for _ in range(WARM_UP):
            await call(app, method, path, cookie)
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        for _ in range(requests):
            status = await call(app, method, path, cookie)
            assert status == 200, status
            await asyncio.sleep(0)  # as a server's event loop turns between requests
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile)


def instructions(
    url: str, metrics: bool, what: str, requests: int, multiprocess: bool, flush: float
) -> int:
    """The instructions callgrind counts in a child making ``requests`` requests."""
    with tempfile.TemporaryDirectory(prefix="callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        if multiprocess:
            env["PROMETHEUS_MULTIPROC_DIR"] = tmp
        command = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            sys.executable, __file__, "--child", url, "on" if metrics else "off", what,
            str(requests), str(flush),
        ]  # fmt: skip
        subprocess.run(command, env=env, check=True, capture_output=True)
        totals = re.search(r"^(?:totals|summary): (\d+)", out.read_text(), re.MULTILINE)
        assert totals is not None, "no totals in callgrind's output"
        return int(totals.group(1))


NEVER = 86400.0
KINDS = {
    "metrics off": (False, NEVER),
    "metrics on": (True, NEVER),
    # With several workers the figures reach their files every FLUSH_INTERVAL; under valgrind
    # that would be every few requests, set by the wall clock. So the flush is measured apart:
    # after every request, the most it can cost (a worker answering under 4 requests a second).
    "on, a flush per request": (True, 0.0),
}


def run(args: argparse.Namespace) -> dict[str, Any]:
    low, high = args.requests
    kinds = list(KINDS) if args.multiprocess else list(KINDS)[:2]
    rows = []
    with redis_server() as redis:
        for what in ENDPOINTS:
            row: dict[str, Any] = {"request": what}
            for kind in kinds:
                metrics, flush = KINDS[kind]
                low_total, high_total = (
                    instructions(redis.url, metrics, what, n, args.multiprocess, flush)
                    for n in (low, high)
                )
                row[kind] = (high_total - low_total) / (high - low)
            rows.append(row)
    result = {"requests": [low, high], "multiprocess": args.multiprocess, "rows": rows}
    save_result("metrics-callgrind" + ("-multiprocess" if args.multiprocess else ""), result)
    return result


def render(result: dict[str, Any]) -> str:
    """Instructions per request of each kind, and what metrics add to the "off" figure."""
    mode = "multiprocess files" if result["multiprocess"] else "one process"
    kinds = [kind for kind in KINDS if kind in result["rows"][0]]
    lines = []
    for row in result["rows"]:
        off = row["metrics off"]
        cells = [f"{row[kind]:,.0f}" for kind in kinds]
        added = [
            f"{row[kind] - off:+,.0f} ({(row[kind] / off - 1) * 100:+.1f} %)" for kind in kinds[1:]
        ]
        lines.append([row["request"], *cells, *added])
    headers = [f"request ({mode})", *kinds, *(f"added: {kind}" for kind in kinds[1:])]
    return table(headers, lines)


def profile(args: argparse.Namespace) -> None:
    with redis_server() as redis, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profile"
        metrics = args.cprofile == "on"
        asyncio.run(child(redis.url, metrics, "read", args.requests[1], out, NEVER))
        stats = pstats.Stats(str(out))
        stats.sort_stats("tottime").print_stats(40)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, metrics, what, requests, flush = sys.argv[2:7]
        asyncio.run(child(url, metrics == "on", what, int(requests), None, float(flush)))
        return
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, nargs=2, default=[400, 1200], metavar=("LOW", "HIGH"))
    p.add_argument("--multiprocess", action="store_true", help="count into multiprocess files")
    p.add_argument("--cprofile", choices=["on", "off"], help="profile one child with cProfile")
    args = p.parse_args()
    if args.cprofile:
        with contextlib.suppress(BrokenPipeError):
            profile(args)
        return
    print(render(run(args)))


if __name__ == "__main__":
    main()
