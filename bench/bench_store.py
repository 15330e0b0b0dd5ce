"""Benchmark 2: store throughput and latency, sync and asyncio, against a bare GETEX floor.

    python bench/bench_store.py [--duration 3] [--concurrency 16]

The floor is one redis-py ``GETEX key PX <idle>`` per operation with exactly SessionHub's client
settings (``sessionhub.hub.redis_client_kwargs``) in the same process: the least any
load-and-slide can cost over redis-py. The floor and the operations are measured in turn, round
after round (``--rounds``), and each figure is the median round, so a slow spell of the shared
machine cannot land on one of them only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio as aioredis

from _common import UA, percentile, redis_server, save_result, settings, table

DATA = {"cart": [1, 2, 3], "csrf": "0123456789abcdef0123456789abcdef", "theme": "dark"}


def _summary(lat_ns: list[int], elapsed: float) -> dict[str, float]:
    return {
        "ops": len(lat_ns) / elapsed,
        "p50_ms": percentile(lat_ns, 50) / 1e6,
        "p99_ms": percentile(lat_ns, 99) / 1e6,
    }


def sync_loop(fn: Callable[[int], Any], duration: float) -> dict[str, float]:
    for i in range(50):  # warm up (script cache, connections)
        fn(i)
    lat: list[int] = []
    clock = time.perf_counter_ns
    start = time.perf_counter()
    end = start + duration
    i = 0
    while True:
        t0 = clock()
        fn(i)
        lat.append(clock() - t0)
        i += 1
        if i % 64 == 0 and time.perf_counter() >= end:
            break
    return _summary(lat, time.perf_counter() - start)


async def async_loop(
    fn: Callable[[int], Awaitable[Any]], duration: float, concurrency: int
) -> dict[str, float]:
    for i in range(200):
        await fn(i)
    lat: list[int] = []
    clock = time.perf_counter_ns
    start = time.perf_counter()
    end = start + duration

    async def worker(w: int) -> None:
        i = w * 10_000_000
        while time.perf_counter() < end:
            t0 = clock()
            await fn(i)
            lat.append(clock() - t0)
            i += 1

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return _summary(lat, time.perf_counter() - start)


def _median(rounds: list[dict[str, float]]) -> dict[str, float]:
    ordered = sorted(rounds, key=lambda r: r["ops"])
    return {**ordered[len(ordered) // 2], "rounds_ops": [r["ops"] for r in rounds]}


def _interleaved(rounds: int, measure: dict[str, Callable[[], dict[str, float]]]) -> Any:
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in measure}
    for _ in range(rounds):
        for name, fn in measure.items():
            runs[name].append(fn())
    return {name: _median(each) for name, each in runs.items()}


def run_sync(url: str, duration: float, rounds: int) -> dict[str, dict[str, float]]:
    from sessionhub.hub import SessionHub, redis_client_kwargs

    s = settings(url)
    hub = SessionHub(s)
    floor = redis.Redis.from_url(url, **redis_client_kwargs(s.redis))
    try:
        floor.set("bench:floor", "x" * 300)
        _, cookie = hub.create("alice", data=DATA, user_agent=UA, ip="127.0.0.1")
        session = hub.open(cookie, touch=False)
        assert session is not None

        def update(i: int) -> None:
            session["n"] = i
            hub.save(session)

        ops: dict[str, Callable[[int], Any]] = {
            "floor: GETEX": lambda _: floor.execute_command(
                "GETEX", "bench:floor", "PX", 7_200_000
            ),
            "load-and-slide": lambda _: hub.open(cookie),
            "update (one key)": update,
            "create": lambda _: hub.create("alice", data=DATA, user_agent=UA, ip="127.0.0.1"),
        }
        each = duration / rounds
        return _interleaved(  # type: ignore[no-any-return]
            rounds, {name: (lambda fn=fn: sync_loop(fn, each)) for name, fn in ops.items()}
        )
    finally:
        hub.close()
        floor.close()


async def run_async(
    url: str, duration: float, concurrency: int, rounds: int
) -> dict[str, dict[str, float]]:
    from sessionhub.hub import AsyncSessionHub, redis_client_kwargs

    s = settings(url)
    hub = AsyncSessionHub(s)
    await hub.start()
    floor = aioredis.Redis.from_url(url, **redis_client_kwargs(s.redis))
    try:
        await floor.set("bench:floor", "x" * 300)

        async def getex(_: int) -> Any:
            return await floor.execute_command("GETEX", "bench:floor", "PX", 7_200_000)

        cookies = [
            (await hub.create("alice", data=DATA, user_agent=UA, ip="127.0.0.1"))[1]
            for _ in range(concurrency)
        ]

        async def load(i: int) -> Any:
            return await hub.open(cookies[i % concurrency])

        sessions = [await hub.open(c, touch=False) for c in cookies]

        async def update(i: int) -> None:
            session = sessions[i % concurrency]
            assert session is not None
            session["n"] = i
            await hub.save(session)

        async def create(_: int) -> Any:
            return await hub.create("alice", data=DATA, user_agent=UA, ip="127.0.0.1")

        ops: dict[str, Callable[[int], Awaitable[Any]]] = {
            "floor: GETEX": getex,
            "load-and-slide": load,
            "update (one key)": update,
            "create": create,
        }
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in ops}
        for _ in range(rounds):
            for name, fn in ops.items():
                runs[name].append(await async_loop(fn, duration / rounds, concurrency))
        return {name: _median(each) for name, each in runs.items()}
    finally:
        await hub.aclose()
        await floor.aclose()


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"duration_s": args.duration, "concurrency": args.concurrency}
    with redis_server() as server:
        result["sync"] = run_sync(server.url, args.duration, args.rounds)
    with redis_server() as server:
        result["asyncio"] = asyncio.run(
            run_async(server.url, args.duration, args.concurrency, args.rounds)
        )
    for mode in ("sync", "asyncio"):
        floor = result[mode]["floor: GETEX"]["rounds_ops"]
        for row in result[mode].values():  # the median of the per-round ratios
            pairs = zip(row["rounds_ops"], floor, strict=True)
            row["vs_floor"] = statistics.median(x / f for x, f in pairs)
    save_result("store", result)
    return result


def render(result: dict[str, Any]) -> str:
    rows = []
    for mode in ("sync", "asyncio"):
        for name, r in result[mode].items():
            met = "" if name.startswith("floor") else ("yes" if r["vs_floor"] >= 0.8 else "NO")
            rows.append(
                [
                    mode,
                    name,
                    r["ops"],
                    f"{r['p50_ms']:.3f}",
                    f"{r['p99_ms']:.3f}",
                    f"{r['vs_floor']:.2f}x",
                    met,
                ]
            )
    headers = ["client", "operation", "ops/s", "p50 ms", "p99 ms", "vs floor", ">= 0.8x"]
    return table(headers, rows)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--duration", type=float, default=6.0, help="seconds per operation, all rounds")
    p.add_argument("--rounds", type=int, default=3, help="measurements of each operation")
    p.add_argument("--concurrency", type=int, default=16, help="asyncio tasks")
    return p


def main() -> None:
    print(render(run(parser().parse_args())))


if __name__ == "__main__":
    main()
