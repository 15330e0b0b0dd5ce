"""Benchmark: the service's authenticated read and read-modify on standalone, Sentinel, Cluster.

    python bench/bench_topologies.py [--duration 4] [--rounds 5] [--connections 32]

One ``sessionhub serve`` (one worker) per topology, side by side: a standalone redis-server; a
master with a replica and three sentinels (``MODE: sentinel``); three masters with a replica
each (``MODE: cluster``), all started here on free loopback ports. wrk measures
``GET /api/auth/me`` (read, slides the expiry) and ``POST /api/session/extend`` (read, then
write the new expiry) on each service in turn, round after round after a warm-up, so a slow spell
of the shared machine hits every topology alike. Requests/s is the median over the rounds; each
ratio (topology over standalone) is the median of the per-round ratios. Each service's health is
checked after the run: a figure served from memory would not measure the topology.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _common as bench
from redis_server import SENTINEL_MASTER, ClusterGroup, SentinelGroup

ENDPOINTS = {"read": ("GET", "/api/auth/me"), "read-modify": ("POST", "/api/session/extend")}
TOPOLOGIES = ("standalone", "sentinel", "cluster")


@contextlib.contextmanager
def redis_for(topology: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Start ``topology``; yield a URL for the config and the REDIS keys that pick the mode."""
    if topology == "standalone":
        with bench.redis_server() as server:
            yield server.url, {}
        return
    group: SentinelGroup | ClusterGroup = (
        SentinelGroup() if topology == "sentinel" else ClusterGroup()
    )
    try:
        group.start()
        if isinstance(group, SentinelGroup):
            yield (
                "",
                {
                    "URL": None,
                    "MODE": "sentinel",
                    "SENTINELS": group.sentinel_addresses,
                    "SENTINEL_MASTER": SENTINEL_MASTER,
                },
            )
        else:
            yield "", {"URL": None, "MODE": "cluster", "CLUSTER_NODES": group.startup_nodes}
    finally:
        group.close()


@contextlib.contextmanager
def service(topology: str, tmp: Path) -> Iterator[tuple[str, str]]:
    """A service on ``topology``; its base URL and a logged-in Cookie header."""
    port = bench.free_port()
    base = f"http://127.0.0.1:{port}"
    with redis_for(topology) as (url, redis_extra):
        directory = Path(tempfile.mkdtemp(dir=tmp))
        config = bench.write_config(directory, url or "redis://unused", redis_extra)
        with bench.process(bench.sessionhub_cmd(config, port, 1), base + "/healthz"):
            yield base, bench.login(base)


def health(base: str) -> str:
    try:
        with urllib.request.urlopen(base + "/api/health/redis", timeout=5) as resp:  # noqa: S310
            return str(json.load(resp)["data"]["status"])
    except urllib.error.HTTPError as exc:
        return str(json.load(exc)["data"]["status"])


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    healthy: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        up = {t: stack.enter_context(service(t, Path(tmp))) for t in TOPOLOGIES}
        for base, cookie in up.values():
            for method, path in ENDPOINTS.values():  # warm-up: imports, caches, connections
                bench.wrk(base + path, cookie=cookie, method=method, duration=1, connections=8)
        for _ in range(args.rounds):
            for topology, (base, cookie) in up.items():
                for what, (method, path) in ENDPOINTS.items():
                    r = bench.wrk(
                        base + path,
                        cookie=cookie,
                        method=method,
                        duration=args.duration,
                        connections=args.connections,
                    )
                    print({"topology": topology, "request": what, **r})
                    runs.setdefault((topology, what), []).append(r)
        healthy = {t: health(base) for t, (base, _) in up.items()}
    rows = []
    for (topology, what), each in runs.items():
        median = sorted(each, key=lambda r: r["rps"])[len(each) // 2]
        base_rounds = [r["rps"] for r in runs[("standalone", what)]]
        ratio = statistics.median(r["rps"] / b for r, b in zip(each, base_rounds, strict=True))
        rows.append(
            {
                "topology": topology,
                "request": what,
                **median,
                "rounds_rps": [r["rps"] for r in each],
                "vs_standalone": ratio,
                "errors": sum(r["non2xx"] + r["socket_errors"] for r in each),
                "health": healthy[topology],
            }
        )
    result = {
        "duration_s": args.duration,
        "rounds": args.rounds,
        "connections": args.connections,
        "rows": rows,
    }
    bench.save_result("topologies", result)
    return result


def render(result: dict[str, Any]) -> str:
    rows = [
        [
            r["topology"],
            r["request"],
            r["rps"],
            f"{r['vs_standalone']:.2f}x",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            int(r["errors"]),
            r["health"],
        ]
        for r in result["rows"]
    ]
    headers = ["topology", "request", "req/s (median)", "vs standalone", "p50 ms", "p99 ms"]
    return bench.table([*headers, "errors", "health after"], rows)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--duration", type=float, default=4.0, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=5, help="measurements of each topology")
    p.add_argument("--connections", type=int, default=32)
    return p


def main() -> None:
    print(render(run(parser().parse_args())))


if __name__ == "__main__":
    main()
