"""CPU instructions per request, counted by valgrind's callgrind: a figure that does not drift
with the machine's load, as timings on a shared machine do.

An app of ``adapter_apps.py`` runs in a child process under ``valgrind --tool=callgrind``: it
logs in a few sessions through its own ``/login``, makes 50 requests to warm up, then ``n``
more. The same child runs again with ``2n``; the difference over ``n`` is what one request
costs, start-up, imports and warm-up cancelled out. Every thread of the process is counted (a
subscriber thread that handles the process's own messages included); the kernel's work (system
calls) and Redis's are not. ``PYTHONHASHSEED`` is fixed, so a run without Redis (the floor)
counts the same instructions every time.

    python bench/callgrind.py starlette sessionhub read [--requests 500]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import adapter_apps
from _common import python, redis_server

SESSIONS = 20
WARM_UP = 50


def child(framework: str, side: str, request: str, url: str, n: int) -> None:
    """What valgrind runs: warm up, then ``n`` requests; prints the local cache's hits."""
    from bench_adapters import Client

    client = Client(framework, side, url, 0 if side == "floor" else SESSIONS)
    path = adapter_apps.PATHS[request]
    client.run(path, count=WARM_UP)
    client.run(path, count=n)
    if side == "sessionhub":
        from sessionhub.stores.resilient import ResilientCore

        cores = [o for o in gc.get_objects() if isinstance(o, ResilientCore)]
        hits = sum(c.cache_hits for c in cores)
        misses = sum(c.cache_misses for c in cores)
        print(json.dumps({"hits": hits, "misses": misses}), flush=True)
    client.close()


def _count(args: list[str], out: Path) -> tuple[int, dict[str, Any]]:
    """Instructions the child made (every thread), and what it printed."""
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", python(), __file__]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [*cmd, "--child", *args], capture_output=True, text=True, env=env, cwd=Path(__file__).parent
    )
    if done.returncode != 0:
        raise RuntimeError(f"callgrind child {args} failed:\n{done.stderr[-3000:]}")
    total = None
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            total = int(line.split()[1])
    if total is None:
        raise RuntimeError("no totals in callgrind output")
    printed = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return total, json.loads(printed[-1]) if printed else {}


def instructions(
    framework: str, side: str, request: str, url: str, n: int, tmp: Path
) -> dict[str, Any]:
    """Instructions per request of ``framework``'s app on ``side`` for ``request``; with the
    local cache's hit rate over the measured requests for SessionHub."""
    base = [framework, side, request, url]
    small, seen_small = _count([*base, str(n)], tmp / f"cg.{framework}.{side}.{request}.1")
    large, seen_large = _count([*base, str(2 * n)], tmp / f"cg.{framework}.{side}.{request}.2")
    result: dict[str, Any] = {"per_request": (large - small) / n, "requests": n}
    if seen_large:
        hits = seen_large["hits"] - seen_small["hits"]
        misses = seen_large["misses"] - seen_small["misses"]
        result["hit_rate"] = hits / max(1, hits + misses)
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        framework, side, request, url, n = sys.argv[2:7]
        child(framework, side, request, url, int(n))
        return
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("framework", choices=sorted(adapter_apps.FRAMEWORKS))
    p.add_argument("side", choices=adapter_apps.SIDES)
    p.add_argument("request", choices=["read", "read-modify"])
    p.add_argument("--requests", type=int, default=500)
    args = p.parse_args()
    with redis_server() as server, tempfile.TemporaryDirectory() as tmp:
        print(instructions(args.framework, args.side, args.request, server.url, args.requests,
                           Path(tmp)))  # fmt: skip


if __name__ == "__main__":
    main()
