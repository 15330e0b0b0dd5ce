"""What a load costs Redis: server time per call of ``load.lua`` and of its parts.

    python bench/profile_lua.py [--calls 30000]

One real session (the store benchmark's data and User-Agent) is created, then each variant is
called ``--calls`` times in pipelined batches and ``INFO commandstats`` gives Redis's own time per
call (``usec_per_call``), which a blocking client waits out on every load. Best of three.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _common import UA, redis_server, settings, table
from bench_store import DATA

VARIANTS = {
    "empty script (return 1)": "return 1",
    "script returning HGETALL": "return redis.call('HGETALL', KEYS[1])",
    "script: HMGET e l x + the slide's two writes": """
local m = redis.call('HMGET', KEYS[1], 'e', 'l', 'x')
local e = string.format('%d', math.min(tonumber(ARGV[1]) + tonumber(ARGV[2]), tonumber(m[3])))
redis.call('HSET', KEYS[1], 'e', e, 'l', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], e)
return 1""",
}


def _server_usec(raw: Any, command: str, args: tuple[Any, ...], calls: int) -> float:
    best = float("inf")
    stat = "cmdstat_" + command.lower()
    for _ in range(3):
        raw.config_resetstat()
        for start in range(0, calls, 1000):
            pipe = raw.pipeline(transaction=False)
            for _ in range(min(1000, calls - start)):
                pipe.execute_command(command, *args)
            pipe.execute()
        best = min(best, float(raw.info("commandstats")[stat]["usec_per_call"]))
    return best


def run(args: argparse.Namespace) -> tuple[list[list[Any]], int]:
    from sessionhub.hub import SessionHub
    from sessionhub.stores.redis import LOAD

    with redis_server() as server:
        hub = SessionHub(settings(server.url))
        raw = server.client()
        try:
            _, cookie = hub.create("alice", data=DATA, user_agent=UA, ip="127.0.0.1")
            storage_id = hub.manager.storage_id_for_cookie(cookie)
            ops = hub.manager.core.redis_ops
            assert ops is not None
            keys = ops.keys.session_and_counts(storage_id)
            now = int(time.time() * 1000)
            script_args = (2, *keys, now, 1_800_000, 1, 0, ops.bucket_ms)
            raw.set("bench:floor", "x" * 300)
            rows: list[list[Any]] = [
                ["GETEX (the store benchmark's floor)", _server_usec(
                    raw, "GETEX", ("bench:floor", "PX", 7_200_000), args.calls)],
                ["native HGETALL of the session", _server_usec(
                    raw, "HGETALL", (keys[0],), args.calls)],
                ["load.lua (what every load runs)", _server_usec(
                    raw, "EVALSHA", (raw.script_load(LOAD.source), *script_args), args.calls)],
            ]  # fmt: skip
            for name, source in VARIANTS.items():
                sha = raw.script_load(source)
                rows.append([name, _server_usec(raw, "EVALSHA", (sha, *script_args), args.calls)])
            return rows, len(raw.hgetall(keys[0]))
        finally:
            hub.close()
            raw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30_000)
    rows, fields = run(parser.parse_args())
    print(table(["call", "Redis usec per call"], [[name, f"{usec:.2f}"] for name, usec in rows]))
    print(f"\nThe session hash has {fields} fields.")


if __name__ == "__main__":
    main()
