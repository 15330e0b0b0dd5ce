"""Benchmark 4: scale. Load N sessions (pipelined), then measure stats/health latency, Redis
memory per session (every index included) next to Flask-Session's, the time for Redis to expire
them and for the count to reach 0.

    python bench/bench_scale.py [--sessions 1000000] [--batch 2000]

SessionHub's sessions are written with the very script ``create`` uses (``RedisOps.create``),
batched into pipelines; Flask-Session's are written the way its Redis interface writes them
(``SET session:<sid> <msgpack> EX <lifetime>``) with the same payload. Each store gets its own
fresh redis-server, so ``used_memory`` deltas do not mix.
"""

from __future__ import annotations

import argparse
import secrets
import time
from typing import Any

import msgspec

from _common import UA, percentile, redis_server, save_result, settings, table

LIFETIME_MS = 7_200_000


def payload(i: int, ua: str) -> dict[str, Any]:
    return {
        "user_id": f"user-{i:07d}",
        "user_agent": ua,
        "ip": "203.0.113.7",
        "data": {"csrf": secrets.token_hex(16), "theme": "dark"},
    }


def latency(fn: Any, n: int = 300) -> dict[str, float]:
    lat = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        lat.append(time.perf_counter_ns() - t0)
    return {"p50_ms": percentile(lat, 50) / 1e6, "p99_ms": percentile(lat, 99) / 1e6}


def wait_keys(client: Any, at_most: int, since: float, timeout: float = 600) -> float:
    """Seconds from ``since`` until DBSIZE <= at_most."""
    while client.dbsize() > at_most:
        if time.time() - since > timeout:
            return float("nan")
        time.sleep(0.05)
    return time.time() - since


BREAKDOWN = ("session", "user_index", "counts")


def breakdown(
    raw: Any, ops: Any, storage_ids: list[str], user_keys: list[str], n: int
) -> dict[str, float]:
    """Where the bytes go: MEMORY USAGE of a sample of each kind of key, per session."""
    sample = range(0, len(storage_ids), max(1, len(storage_ids) // 500))

    def mean(keys: list[str]) -> float:
        return sum(int(raw.memory_usage(k, samples=0) or 0) for k in keys) / max(1, len(keys))

    counts = [ops.keys.counts(i) for i in range(ops.keys.shards)]
    return {
        "session": mean([ops.keys.session(storage_ids[i]) for i in sample]),
        "user_index": mean([user_keys[i] for i in sample if i < len(user_keys)]),
        "counts": sum(int(raw.memory_usage(k, samples=0) or 0) for k in counts) / n,
    }


def sessionhub_run(n: int, batch: int, ua: str, expire: bool, signed_in: bool) -> dict[str, Any]:
    """Load ``n`` sessions; signed-in ones also get their entry in the user's session index."""
    from sessionhub.hub import SessionHub
    from sessionhub.session import SessionRecord
    from sessionhub.stores.base import PipelineCall

    out: dict[str, Any] = {}
    with redis_server() as server:
        hub = SessionHub(settings(server.url))
        raw = server.client()
        ops = hub.manager.core.redis_ops
        codec = hub.manager.codec
        users = hub.manager.user_sessions
        assert ops is not None
        before = int(raw.info("memory")["used_memory"])
        now = int(time.time() * 1000)
        storage_ids: list[str] = []
        user_keys: list[str] = []
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            calls = []
            for i in range(start, min(n, start + batch)):
                p = payload(i, ua)
                storage_id = codec.storage_id(codec.new_token())
                storage_ids.append(storage_id)
                user = p["user_id"] if signed_in else None
                if user:
                    user_keys.append(users.keys.sessions(user))
                data = p["data"] if signed_in else {"user_id": p["user_id"], **p["data"]}
                record = SessionRecord(
                    storage_id, user, now, now, now + LIFETIME_MS, now + 7 * 86_400_000,
                    p["user_agent"], p["ip"], data,
                )  # fmt: skip
                index = (
                    (users._add_call(user, {storage_id: record.absolute_expires_ms}, now),)
                    if user
                    else ()
                )
                call = next(ops.create(storage_id, record.to_fields(), record.expires_ms, index))
                calls += call.calls if isinstance(call, PipelineCall) else [call]

            def load(c: tuple[Any, ...] = tuple(calls)) -> Any:
                return (yield PipelineCall(c))

            hub.run(load())
        out["load_s"] = time.perf_counter() - t0
        out["load_rate"] = n / out["load_s"]
        after = int(raw.info("memory")["used_memory"])
        out["bytes_per_session"] = (after - before) / n
        out["encoding"] = raw.object("encoding", ops.keys.session(storage_ids[0])).decode()
        out["breakdown"] = breakdown(raw, ops, storage_ids, user_keys, n)
        out["stats"] = latency(hub.stats)
        out["health"] = latency(hub.health)
        count = hub.stats()["redis_sessions"]
        assert count == n, count
        if expire:
            # Move every session's expiry (key TTL, and its bucket in the shard's counts) to 1 s
            # from now, then time Redis's own expiry and the count reaching 0 (bucket's end).
            at = int(time.time() * 1000) + 1000
            pipe = raw.pipeline(transaction=False)
            per_shard = [0] * ops.keys.shards
            for k, storage_id in enumerate(storage_ids):
                pipe.pexpireat(ops.keys.session(storage_id), at)
                per_shard[ops.keys.shard(storage_id)] += 1
                if k % 5000 == 4999:
                    pipe.execute()
            for key in user_keys:
                pipe.pexpireat(key, at)
            end = -(-at // ops.bucket_ms) * ops.bucket_ms
            for shard, count in enumerate(per_shard):
                pipe.delete(ops.keys.counts(shard))
                pipe.hset(ops.keys.counts(shard), str(end), count)
            pipe.execute()
            out["expire_s"] = wait_keys(raw, ops.keys.shards, at / 1000)
            while hub.stats()["redis_sessions"]:
                time.sleep(0.05)
            out["count_zero_s"] = time.time() - at / 1000
            out["bucket_s"] = ops.bucket_ms / 1000
            out["count_after_expiry"] = hub.stats()["redis_sessions"]
            out["stats_after_expiry"] = latency(hub.stats, 300)
        hub.close()
        raw.close()
    return out


def flask_session_run(n: int, batch: int, ua: str, expire: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    encoder = msgspec.msgpack.Encoder()
    with redis_server() as server:
        raw = server.client()
        before = int(raw.info("memory")["used_memory"])
        now = int(time.time() * 1000)
        t0 = time.perf_counter()
        keys = []
        for start in range(0, n, batch):
            pipe = raw.pipeline(transaction=False)
            for i in range(start, min(n, start + batch)):
                p = payload(i, ua)
                value = {
                    "_permanent": True,
                    "user_id": p["user_id"],
                    "user_agent": p["user_agent"],
                    "ip": p["ip"],
                    "created_at": now,
                    **p["data"],
                }
                key = "session:" + secrets.token_urlsafe(32)
                keys.append(key)
                pipe.set(key, encoder.encode(value), ex=LIFETIME_MS // 1000)
            pipe.execute()
        out["load_s"] = time.perf_counter() - t0
        out["load_rate"] = n / out["load_s"]
        after = int(raw.info("memory")["used_memory"])
        out["bytes_per_session"] = (after - before) / n
        out["encoding"] = raw.object("encoding", keys[0]).decode()
        if expire:
            at = int(time.time() * 1000) + 1000
            pipe = raw.pipeline(transaction=False)
            for k, key in enumerate(keys):
                pipe.pexpireat(key, at)
                if k % 5000 == 4999:
                    pipe.execute()
            pipe.execute()
            out["expire_s"] = wait_keys(raw, 0, at / 1000)
        raw.close()
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"sessions": args.sessions, "user_agent_len": len(UA)}
    result["sessionhub"] = sessionhub_run(
        args.sessions, args.batch, UA, expire=True, signed_in=True
    )
    result["flask_session"] = flask_session_run(args.sessions, args.batch, UA, expire=True)
    # Anonymous sessions (no user index), fewer of them: the per-user key is the difference.
    small = max(1000, args.sessions // 10)
    result["anonymous"] = {
        "sessions": small,
        "sessionhub": sessionhub_run(small, args.batch, UA, expire=False, signed_in=False),
        "flask_session": flask_session_run(small, args.batch, UA, expire=False),
    }
    sh, fs = result["sessionhub"], result["flask_session"]
    result["memory_ratio"] = sh["bytes_per_session"] / fs["bytes_per_session"]
    a = result["anonymous"]
    a["memory_ratio"] = (
        a["sessionhub"]["bytes_per_session"] / a["flask_session"]["bytes_per_session"]
    )
    save_result("scale", result)
    return result


def _bytes(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.3f}"


def render(result: dict[str, Any]) -> str:
    sh, fs = result["sessionhub"], result["flask_session"]
    n = result["sessions"]
    rows = [
        ["sessions loaded", f"{n:,}", f"{n:,}", ""],
        ["load rate (sessions/s, pipelined)", sh["load_rate"], fs["load_rate"], ""],
        [
            "Redis bytes/session, signed in (session + shard counts + the user's index, "
            "one session per user)",
            sh["bytes_per_session"],
            fs["bytes_per_session"],
            f"{result['memory_ratio']:.2f}x (target <= 1.5x: "
            f"{'yes' if result['memory_ratio'] <= 1.5 else 'NO'})",
        ],
        [
            f"Redis bytes/session, anonymous (session + shard counts; "
            f"{result['anonymous']['sessions']:,} sessions)",
            result["anonymous"]["sessionhub"]["bytes_per_session"],
            result["anonymous"]["flask_session"]["bytes_per_session"],
            f"{result['anonymous']['memory_ratio']:.2f}x (target <= 1.5x: "
            f"{'yes' if result['anonymous']['memory_ratio'] <= 1.5 else 'NO'})",
        ],
        [
            "of which: session hash / user's index / shard counts (MEMORY USAGE per session; "
            "the rest is Redis's key tables)",
            " / ".join(_bytes(sh["breakdown"][k]) for k in BREAKDOWN),
            "",
            "",
        ],
        [
            f"value encoding (User-Agent {result['user_agent_len']} chars)",
            sh["encoding"],
            fs["encoding"],
            "",
        ],
        [
            "stats p50 / p99 ms",
            f"{sh['stats']['p50_ms']:.2f} / {sh['stats']['p99_ms']:.2f}",
            "n/a (no index; would need SCAN)",
            f"target p99 < 5 ms: {'yes' if sh['stats']['p99_ms'] < 5 else 'NO'}",
        ],
        [
            "health p50 / p99 ms",
            f"{sh['health']['p50_ms']:.2f} / {sh['health']['p99_ms']:.2f}",
            "n/a",
            f"target p99 < 5 ms: {'yes' if sh['health']['p99_ms'] < 5 else 'NO'}",
        ],
        ["time for Redis to expire all (s)", sh.get("expire_s"), fs.get("expire_s"), ""],
        [
            "time until the count is 0 (s after the expiry time)",
            sh.get("count_zero_s"),
            "n/a (no count)",
            f"bucket {sh.get('bucket_s')} s: at most one bucket late",
        ],
        [
            "stats p50 / p99 ms once all expired",
            f"{sh['stats_after_expiry']['p50_ms']:.2f} / {sh['stats_after_expiry']['p99_ms']:.2f}",
            "",
            f"count: {sh['count_after_expiry']}",
        ],
    ]
    return table(["measure", "SessionHub", "Flask-Session 0.8", "ratio / target"], rows)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sessions", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=2000, help="sessions per pipeline")
    return p


def main() -> None:
    print(render(run(parser().parse_args())))


if __name__ == "__main__":
    main()
