"""Benchmark 6: push. 1,000 open SSE streams on one worker: memory per stream, time for a
broadcast to reach all of them, and p99 of a direct message reaching its stream.

    python bench/bench_push.py [--streams 1000] [--stream-path ...] [--broadcast-path ...]

The push endpoints (issue 3) may not exist in this build: the benchmark looks for them in the
service's routes first and prints "not available in this build" when there are none. The paths
and the JSON bodies below are the assumed API; override the paths with flags when they differ.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

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

ADMIN_KEY = "bench-admin-key-0123456789abcdef"
NOT_AVAILABLE = "not available in this build"


def push_routes() -> list[str]:
    """Paths of the service's push/SSE routes, if this build has any."""
    try:
        from sessionhub.service.app import create_app
        from sessionhub.service.routes import routes
    except ImportError:
        return []
    paths = {getattr(r, "path", "") for r in routes}
    try:  # routes may also be mounted inside create_app
        from _common import settings

        app = create_app(settings("redis://127.0.0.1:1/0"))
        paths |= {getattr(r, "path", "") for r in app.routes}
    except Exception:  # noqa: S110 - probing only
        pass
    keys = ("push", "sse", "events", "stream", "broadcast", "notify")
    return sorted(p for p in paths if any(k in p.lower() for k in keys))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def open_stream(
    port: int, path: str, cookie: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: bench\r\nCookie: {cookie}\r\nUser-Agent: {UA}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"stream refused: {head[:80]!r}")
    # The writer must stay referenced: a collected StreamWriter closes its connection.
    return reader, writer


async def wait_for(reader: asyncio.StreamReader, marker: bytes) -> float:
    while True:
        line = await reader.readline()
        if not line:
            raise RuntimeError("stream closed")
        if marker in line:
            return time.monotonic()


async def post(port: int, path: str, body: dict[str, Any]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = json.dumps(body).encode()
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Length: {len(data)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + data
    )
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    return int(head.split(b" ", 2)[1])


async def measure(port: int, pid: int, cookies: list[str], args: argparse.Namespace) -> dict:
    base_rss = rss_kib(pid)
    streams = [await open_stream(port, args.stream_path, c) for c in cookies]
    readers = [reader for reader, _ in streams]
    await asyncio.sleep(1)
    per_stream = (rss_kib(pid) - base_rss) * 1024 / len(readers)
    marker = f"bench-{time.time_ns()}".encode()
    waits = [asyncio.create_task(wait_for(r, marker)) for r in readers]
    t0 = time.monotonic()
    await post(port, args.broadcast_path, {"body": {"marker": marker.decode()}})
    done = await asyncio.wait_for(asyncio.gather(*waits), 30)
    broadcast_s = max(done) - t0
    direct = []
    for i in range(args.direct):
        m = f"direct-{i}-{time.time_ns()}".encode()
        target = readers[i % len(readers)]
        w = asyncio.create_task(wait_for(target, m))
        t1 = time.monotonic()
        path = args.direct_path.format(user=f"user{i % len(readers)}")
        await post(port, path, {"body": {"marker": m.decode()}})
        direct.append((await asyncio.wait_for(w, 10)) - t1)
    return {
        "streams": len(readers),
        "bytes_per_stream": per_stream,
        "broadcast_s": broadcast_s,
        "direct_p50_ms": percentile(direct, 50) * 1000,
        "direct_p99_ms": percentile(direct, 99) * 1000,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    found = push_routes()
    if not found:
        print(f"push / SSE: {NOT_AVAILABLE}")
        result: dict[str, Any] = {"available": False, "routes": []}
        save_result("push", result)
        return result
    if args.stream_path not in found:
        print(f"push routes found {found}, but not {args.stream_path}: pass --stream-path etc.")
        result = {"available": False, "routes": found, "reason": "unrecognised API"}
        save_result("push", result)
        return result
    with redis_server() as server, tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        cfg = write_config(Path(tmp), server.url)
        data = yaml.safe_load(cfg.read_text())
        data["ADMIN"] = {"API_KEYS": [ADMIN_KEY]}
        # One user per stream, so a direct message wakes one stream, as in real use.
        hashed = data["USERS"][0]["PASSWORD_HASH"]
        data["USERS"] = [
            {"USERNAME": f"user{i}", "PASSWORD_HASH": hashed} for i in range(args.streams)
        ]
        cfg.write_text(yaml.safe_dump(data))
        base = f"http://127.0.0.1:{port}"
        with process(sessionhub_cmd(cfg, port, 1), base + "/healthz") as proc:
            cookies = [login(base, user=f"user{i}") for i in range(args.streams)]
            try:
                result = asyncio.run(measure(port, proc.pid, cookies, args))
            except Exception as exc:  # an API that differs from the assumed one
                result = {"available": False, "routes": found, "reason": repr(exc)}
            else:
                result["available"] = True
    save_result("push", result)
    return result


def render(r: dict[str, Any]) -> str:
    if not r.get("available"):
        why = r.get("reason", NOT_AVAILABLE)
        return f"Push / SSE: {NOT_AVAILABLE} ({why}; routes found: {r.get('routes') or 'none'})."
    rows = [
        ["open SSE streams (1 worker)", r["streams"], "1,000", ""],
        ["worker memory per stream (bytes)", r["bytes_per_stream"], "", ""],
        ["broadcast reaches all (s)", f"{r['broadcast_s']:.3f}", "< 1", ""],
        ["direct message p50 / p99 (ms)", f"{r['direct_p50_ms']:.1f} / {r['direct_p99_ms']:.1f}",
         "p99 < 100", ""],
    ]  # fmt: skip
    rows[2][3] = "yes" if r["broadcast_s"] < 1 else "NO"
    rows[3][3] = "yes" if r["direct_p99_ms"] < 100 else "NO"
    return table(["measure", "value", "target", "met"], rows)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--direct", type=int, default=200, help="direct messages to time")
    p.add_argument("--stream-path", default="/api/me/messages/stream")
    p.add_argument("--broadcast-path", default="/api/messages/broadcast")
    p.add_argument("--direct-path", default="/api/users/{user}/messages")
    return p


def main() -> None:
    print(render(run(parser().parse_args())))


if __name__ == "__main__":
    main()
