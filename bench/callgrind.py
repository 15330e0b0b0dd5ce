"""CPU instructions per request, counted by valgrind's callgrind: a figure that does not drift
with the machine's load, as timings on a shared machine do.

An app of ``adapter_apps.py`` runs in process under ``valgrind --tool=callgrind`` with the
instrumentation off while it starts, logs in a few sessions through its own ``/login`` and makes
50 requests to warm up. Then it turns the counting on (``callgrind_control``), zeroes the counts,
makes ``n`` requests and dumps them; again with ``2n``. The difference of the two dumps over
``n`` is what one request costs, the control commands' own cost cancelled out. Every thread of the
process is counted (a subscriber thread handling the process's own messages included); the
kernel's work (system calls) and Redis's are not. ``PYTHONHASHSEED`` is fixed, so a run without
Redis (the floor) counts the same instructions every time.

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


def _control(*args: str) -> None:
    """A callgrind_control command to this process; returns once valgrind has carried it out."""
    subprocess.run(["callgrind_control", *args, str(os.getpid())], check=True, capture_output=True)


def _cache_counts() -> tuple[int, int]:
    from sessionhub.stores.resilient import ResilientCore

    # type(): isinstance would ask lazy objects (Django's) for their class, setting them up
    cores = [o for o in gc.get_objects() if type(o) is ResilientCore]
    return sum(c.cache_hits for c in cores), sum(c.cache_misses for c in cores)


def child(framework: str, side: str, request: str, url: str, n: int) -> None:
    """What valgrind runs: warm up, then ``n`` and ``2n`` counted requests; prints the local
    cache's hits and misses over the counted ones."""
    from bench_adapters import Client

    client = Client(framework, side, url, 0 if side == "floor" else SESSIONS)
    path = adapter_apps.PATHS[request]
    client.run(path, count=WARM_UP)
    _control("--instr=on")
    before = _cache_counts()
    for count in (n, 2 * n):
        _control("--zero")
        client.run(path, count=count)
        _control("--dump", f"run {count}")
    hits, misses = (b - a for a, b in zip(before, _cache_counts(), strict=True))
    print(json.dumps({"hits": hits, "misses": misses}), flush=True)
    client.close()


def _dumps(out: Path) -> dict[str, int]:
    """The totals of each dump callgrind wrote, by the reason it was asked for."""
    totals: dict[str, int] = {}
    for part in out.parent.glob(out.name + ".*"):
        reason, total = "", None
        for line in part.read_text().splitlines():
            if line.startswith("desc: Trigger:"):
                reason = line.removeprefix("desc: Trigger:").strip()
            elif line.startswith("totals:"):
                total = int(line.split()[1])
        if total is not None:
            totals[reason] = total
    return totals


def instructions(
    framework: str, side: str, request: str, url: str, n: int, tmp: Path
) -> dict[str, Any]:
    """Instructions per request of ``framework``'s app on ``side`` for ``request``; with the
    local cache's hit rate over the counted requests for SessionHub."""
    out = tmp / f"cg.{framework}.{side}.{request}"
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    done = subprocess.run(
        [*cmd, python(), __file__, "--child", framework, side, request, url, str(n)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        cwd=Path(__file__).parent,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"callgrind of {framework} {side} {request} failed:\n{done.stderr[-3000:]}"
        )
    totals = _dumps(out)
    small, large = totals[f"dump run {n}"], totals[f"dump run {2 * n}"]
    result: dict[str, Any] = {"per_request": (large - small) / n, "requests": n}
    if side == "sessionhub":
        printed = [line for line in done.stdout.splitlines() if line.startswith("{")]
        seen = json.loads(printed[-1])
        result["hit_rate"] = seen["hits"] / max(1, seen["hits"] + seen["misses"])
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
