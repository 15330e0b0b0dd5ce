"""Auto-pipelining: concurrent asyncio calls share one round trip and keep their own results."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from helpers import build_settings
from sessionhub.hub import AsyncSessionHub
from sessionhub.stores.autopipeline import AutoPipeline, _Pending


class CountingPipeline(AutoPipeline):
    """Records the size of every write it makes (instrumentation of our code, not of Redis)."""

    def __init__(self, client: aioredis.Redis) -> None:
        super().__init__(client)
        self.batches: list[int] = []

    def _write(self, batch: list[_Pending]) -> None:
        self.batches.append(len(batch))
        super()._write(batch)


def _hub(redis_url: str) -> tuple[AsyncSessionHub, CountingPipeline]:
    hub = AsyncSessionHub(build_settings(redis_url))
    assert hub.client is not None
    counting = CountingPipeline(hub.client)
    hub._calls = counting
    return hub, counting


def test_concurrent_calls_are_batched_and_correct(redis_url: str) -> None:
    """Fifty concurrent opens go out in few batches and each gets its own session back."""

    async def main() -> tuple[list[Any], list[str], list[int]]:
        hub, counting = _hub(redis_url)
        try:
            made = [await hub.create(f"user{i}", data={"i": i}) for i in range(50)]
            counting.batches.clear()
            opened = await asyncio.gather(*(hub.open(cookie) for _, cookie in made))
            return opened, [s.user_id for s, _ in made], counting.batches
        finally:
            await hub.aclose()

    opened, users, batches = asyncio.run(main())
    assert [s.user_id for s in opened] == users
    assert [s["i"] for s in opened] == list(range(50))
    assert sum(batches) == 50
    assert max(batches) > 1  # they really shared round trips


def test_one_failing_call_does_not_fail_its_batch(redis_url: str) -> None:
    """A call that Redis rejects raises for its caller only; the rest of the batch succeeds."""
    import redis

    async def main() -> list[Any]:
        hub, _ = _hub(redis_url)
        try:
            _, good_cookie = await hub.create("alice")
            bad, bad_cookie = await hub.create("bob")
            key = hub.manager.core.redis.keys.session(bad.sid)
            await hub.client.delete(key)
            await hub.client.set(key, "not a hash")
            return await asyncio.gather(
                hub.open(good_cookie),
                hub.open(bad_cookie),
                hub.open(good_cookie),
                return_exceptions=True,
            )
        finally:
            await hub.aclose()

    first, broken, third = asyncio.run(main())
    assert first.user_id == "alice"
    assert third.user_id == "alice"
    assert isinstance(broken, redis.ResponseError)


def test_batch_survives_script_cache_flush(redis_url: str) -> None:
    """After SCRIPT FLUSH a batched call falls back to EVAL and still answers."""

    async def main() -> list[Any]:
        hub, _ = _hub(redis_url)
        try:
            made = [await hub.create(f"u{i}") for i in range(5)]
            await hub.client.script_flush()
            return await asyncio.gather(*(hub.open(c) for _, c in made))
        finally:
            await hub.aclose()

    assert all(s is not None for s in asyncio.run(main()))
