"""Benchmark: the service's authenticated read and read-modify on standalone, Sentinel, Cluster.

    python bench/bench_topologies.py [--duration 4] [--rounds 5] [--connections 32]

One ``sessionhub serve`` (one worker) per topology, side by side: a standalone redis-server; a
master with a replica and three sentinels (``MODE: sentinel``); three masters with a replica
each (``MODE: cluster``), all started here on free loopback ports. wrk measures
``GET /api/auth/me`` (read, slides the expiry: ``SESSION.REFRESH_THRESHOLD`` is 0 here, so the
local cache does not answer it) and ``POST /api/session/extend`` (read, then
write the new expiry) on each service in turn, round after round after a warm-up, so a slow spell
of the shared machine hits every topology alike. Requests/s is the median over the rounds; each
ratio (topology over standalone) is the median of the per-round ratios. Each service's health is
checked after the run: a figure served from memory would not measure the topology.

Each run also reads ``INFO`` of every master before and after: the Redis CPU (user + system) and
the commands each request cost, summed over the masters (what docs/SCALING.md sizes shards from).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _common as bench
from redis_server import SENTINEL_MASTER, ClusterGroup, RedisServer, SentinelGroup

ENDPOINTS = {"read": ("GET", "/api/auth/me"), "read-modify": ("POST", "/api/session/extend")}
TOPOLOGIES = ("standalone", "sentinel", "cluster")


Masters = Callable[[], list[RedisServer]]


@contextlib.contextmanager
def redis_for(topology: str) -> Iterator[tuple[str, dict[str, Any], Masters]]:
    """Start ``topology``; yield a URL for the config, the REDIS keys that pick the mode and
    where its masters are."""
    if topology == "standalone":
        with bench.redis_server() as server:
            yield server.url, {}, lambda: [server]
        return
    group: SentinelGroup | ClusterGroup = (
        SentinelGroup() if topology == "sentinel" else ClusterGroup()
    )
    try:
        group.start()
        if isinstance(group, SentinelGroup):
            sentinel = group  # narrowed, for the lambda
            yield (
                "",
                {
                    "URL": None,
                    "MODE": "sentinel",
                    "SENTINELS": group.sentinel_addresses,
                    "SENTINEL_MASTER": SENTINEL_MASTER,
                },
                lambda: [sentinel.master()],
            )
        else:
            extra = {"URL": None, "MODE": "cluster", "CLUSTER_NODES": group.startup_nodes}
            yield "", extra, group.masters
    finally:
        group.close()


@contextlib.contextmanager
def service(topology: str, tmp: Path) -> Iterator[tuple[str, str, Masters]]:
    """A service on ``topology``; its base URL, a logged-in Cookie header and its masters."""
    port = bench.free_port()
    base = f"http://127.0.0.1:{port}"
    with redis_for(topology) as (url, redis_extra, masters):
        directory = Path(tempfile.mkdtemp(dir=tmp))
        # No refresh threshold: every read slides in Redis. With one, the local cache answers
        # wrk's reads of one session and the read would not measure the topology at all.
        config = bench.write_config(
            directory, url or "redis://unused", redis_extra, refresh_threshold=0
        )
        with bench.process(bench.sessionhub_cmd(config, port, 1), base + "/healthz"):
            yield base, bench.login(base), masters


def redis_work(masters: Masters) -> tuple[float, int]:
    """CPU seconds (user + system) and commands the masters have used so far, summed."""
    cpu, commands = 0.0, 0
    for master in masters():
        client = master.client(decode_responses=True)
        try:
            info = client.info("cpu") | client.info("stats")
        finally:
            client.close()
        cpu += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        commands += int(info["total_commands_processed"])
    return cpu, commands


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
        for base, cookie, _ in up.values():
            for method, path in ENDPOINTS.values():  # warm-up: imports, caches, connections
                bench.wrk(base + path, cookie=cookie, method=method, duration=1, connections=8)
        for _ in range(args.rounds):
            for topology, (base, cookie, masters) in up.items():
                for what, (method, path) in ENDPOINTS.items():
                    cpu, commands = redis_work(masters)
                    r = bench.wrk(
                        base + path,
                        cookie=cookie,
                        method=method,
                        duration=args.duration,
                        connections=args.connections,
                    )
                    cpu_after, commands_after = redis_work(masters)
                    served = max(r["requests"], 1.0)
                    r["redis_cpu_us"] = (cpu_after - cpu) * 1e6 / served
                    r["redis_commands"] = (commands_after - commands) / served
                    print({"topology": topology, "request": what, **r})
                    runs.setdefault((topology, what), []).append(r)
        healthy = {t: health(base) for t, (base, _, _) in up.items()}
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
                "redis_cpu_us": statistics.median(r["redis_cpu_us"] for r in each),
                "redis_commands": statistics.median(r["redis_commands"] for r in each),
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
            f"{r['redis_cpu_us']:.1f}",
            f"{r['redis_commands']:.2f}",
            int(r["errors"]),
            r["health"],
        ]
        for r in result["rows"]
    ]
    headers = ["topology", "request", "req/s (median)", "vs standalone", "p50 ms", "p99 ms"]
    headers += ["Redis CPU µs/req", "commands/req", "errors", "health after"]
    return bench.table(headers, rows)


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
