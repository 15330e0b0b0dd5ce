"""Benchmark 5: degraded mode. Kill redis-server under steady load, then restart it.

    python bench/bench_degraded.py [--connections 8] [--probe-interval 1.0]

One service worker serves ``GET /api/auth/me`` to an asyncio keep-alive client (every request
timed). Measured: time from SIGKILL until requests are served from memory, request p99 while
degraded, errors over the whole run, and time from the restart until the service reports
healthy (the probe runs every ``REDIS.PROBE_INTERVAL`` seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    UA,
    free_port,
    login,
    percentile,
    process,
    redis_server,
    save_result,
    sessionhub_cmd,
    table,
    write_config,
)


async def request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, cookie: str
) -> tuple[int, bytes]:
    head_lines = f"GET {path} HTTP/1.1\r\nHost: bench\r\nCookie: {cookie}\r\nUser-Agent: {UA}"
    writer.write((head_lines + "\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
    body = await reader.readexactly(length)
    return status, body


async def drive(port: int, cookie: str, server: Any, args: argparse.Namespace) -> dict[str, Any]:
    samples: list[tuple[float, float, int]] = []  # (start, end, status) in time.monotonic()
    errors: list[str] = []
    stop = asyncio.Event()

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                status, _ = await request(reader, writer, "/api/auth/me", cookie)
            except (OSError, asyncio.IncompleteReadError) as exc:
                errors.append(repr(exc))
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            samples.append((t0, time.monotonic(), status))
        writer.close()

    async def health_mode() -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            _, body = await request(reader, writer, "/api/health/redis", cookie)
        finally:
            writer.close()
        return str(json.loads(body)["data"]["mode"])

    tasks = [asyncio.create_task(client()) for _ in range(args.connections)]
    await asyncio.sleep(args.phase)
    t_kill = time.monotonic()
    server.kill()
    await asyncio.sleep(args.phase)
    mode_while_down = await health_mode()
    t_restart = time.monotonic()
    await asyncio.to_thread(server.start)
    t_up = time.monotonic()
    t_back = None
    while time.monotonic() - t_up < 4 * args.probe_interval + 5:
        if await health_mode() == "redis":
            t_back = time.monotonic()
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(args.phase / 2)
    stop.set()
    await asyncio.gather(*tasks)

    ok_after_kill = [e for s, e, st in samples if s >= t_kill and st == 200]
    in_flight = [e for s, e, _ in samples if s < t_kill <= e]
    first_ok = min(ok_after_kill) - t_kill if ok_after_kill else float("nan")
    stall = max(in_flight) - t_kill if in_flight else 0.0
    settle = t_kill + 0.3
    degraded = [(e - s) * 1000 for s, e, st in samples if settle <= s and e <= t_restart]
    before = [(e - s) * 1000 for s, e, st in samples if e < t_kill]
    after = [(e - s) * 1000 for s, e, st in samples if t_back and s > t_back]
    bad = [st for _, _, st in samples if st != 200]
    return {
        "requests": len(samples),
        "failover_ms": max(first_ok, stall) * 1000,
        "first_ok_after_kill_ms": first_ok * 1000,
        "in_flight_stall_ms": stall * 1000,
        "mode_while_down": mode_while_down,
        "p50_healthy_ms": percentile(before, 50),
        "p99_healthy_ms": percentile(before, 99),
        "p50_degraded_ms": percentile(degraded, 50),
        "p99_degraded_ms": percentile(degraded, 99),
        "p99_after_recovery_ms": percentile(after, 99),
        "errors": len(bad) + len(errors),
        "error_samples": sorted({str(b) for b in bad} | set(errors[:5])),
        "redis_start_s": t_up - t_restart,
        "back_to_redis_s": (t_back - t_up) if t_back else float("nan"),
        "probe_interval_s": args.probe_interval,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with redis_server() as server, tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        cfg = write_config(Path(tmp), server.url, {"PROBE_INTERVAL": args.probe_interval})
        base = f"http://127.0.0.1:{port}"
        with process(sessionhub_cmd(cfg, port, 1), base + "/healthz"):
            cookie = login(base)
            result = asyncio.run(drive(port, cookie, server, args))
    result["connections"] = args.connections
    save_result("degraded", result)
    return result


def render(r: dict[str, Any]) -> str:
    def yes(ok: bool) -> str:
        return "yes" if ok else "NO"

    rows = [
        [
            "time until served from memory (ms)",
            f"{r['failover_ms']:.1f}",
            "< 300",
            yes(r["failover_ms"] < 300),
        ],
        ["  first 200 after the kill (ms)", f"{r['first_ok_after_kill_ms']:.1f}", "", ""],
        ["  longest stall of an in-flight request (ms)", f"{r['in_flight_stall_ms']:.1f}", "", ""],
        [
            "p50 / p99 healthy (ms)",
            f"{r['p50_healthy_ms']:.2f} / {r['p99_healthy_ms']:.2f}",
            "",
            "",
        ],
        [
            "p50 / p99 degraded (ms)",
            f"{r['p50_degraded_ms']:.2f} / {r['p99_degraded_ms']:.2f}",
            "p99 < 5",
            yes(r["p99_degraded_ms"] < 5),
        ],
        ["errors (non-200 + socket)", r["errors"], "0", yes(r["errors"] == 0)],
        [
            "back to Redis after restart (s)",
            f"{r['back_to_redis_s']:.2f}",
            f"<= {r['probe_interval_s']} (probe interval)",
            yes(r["back_to_redis_s"] <= r["probe_interval_s"]),
        ],
        ["requests measured", r["requests"], "", ""],
    ]
    return table(["measure", "value", "target", "met"], rows)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--probe-interval", type=float, default=1.0)
    p.add_argument("--phase", type=float, default=3.0, help="seconds healthy, then degraded")
    return p


def main() -> None:
    print(render(run(parser().parse_args())))


if __name__ == "__main__":
    main()
