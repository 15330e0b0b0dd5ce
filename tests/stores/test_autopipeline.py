"""Auto-pipelining: concurrent asyncio calls share one round trip and keep their own results."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from helpers import CountingPipeline, await_for, build_settings
from redis_server import RedisServer
from sessionhub.hub import AsyncSessionHub
from sessionhub.stores.autopipeline import AutoPipeline
from sessionhub.stores.base import CommandCall


def _hub(redis_url: str) -> tuple[AsyncSessionHub, CountingPipeline]:
    # Every open slides, so every open is a call to count (no read answered by the cache).
    hub = AsyncSessionHub(build_settings(redis_url, session={"REFRESH_THRESHOLD": 0}))
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
            await hub.open(made[0][1])  # the load script is cached in Redis from here on
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
            key = hub.manager.core.redis_ops.keys.session(bad.storage_id)
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


def _server(pytestconfig: pytest.Config, **kwargs: Any) -> RedisServer:
    binary = pytestconfig.getoption("redis_server_bin")
    return RedisServer(binary=str(binary) if binary else None, **kwargs).start()


def _ping(pipeline: AutoPipeline) -> Any:
    return pipeline.submit(CommandCall(("PING",)))


def test_password_and_database_come_from_the_client(pytestconfig: pytest.Config) -> None:
    """AUTH and SELECT are sent first: a session lands in the URL's database behind a password."""
    server = _server(pytestconfig, password="s3cret")
    try:
        url = f"redis://:s3cret@{server.host}:{server.port}/3"

        async def main() -> str:
            hub = AsyncSessionHub(build_settings(url))
            try:
                assert isinstance(hub._calls, AutoPipeline)
                session, cookie = await hub.create("alice")
                assert (await hub.open(cookie)) is not None
                return session.storage_id
            finally:
                await hub.aclose()

        storage_id = asyncio.run(main())
        in_db3 = server.client(db=3).keys(f"*{storage_id}*")
        assert len(in_db3) == 1
        assert server.client(db=0).keys("*") == []
    finally:
        server.close()


def test_wrong_password_is_a_connection_error(pytestconfig: pytest.Config) -> None:
    """A refused AUTH fails calls with redis-py's AuthenticationError, which means Redis is down."""
    server = _server(pytestconfig, password="s3cret")
    try:
        client = aioredis.Redis.from_url(f"redis://:wrong@{server.host}:{server.port}/0")

        async def main() -> BaseException:
            pipeline = AutoPipeline(client)
            with pytest.raises(redis.ConnectionError) as caught:
                await _ping(pipeline)
            await pipeline.disconnect()
            return caught.value

        assert isinstance(asyncio.run(main()), redis.AuthenticationError)
    finally:
        server.close()


def test_unix_socket(pytestconfig: pytest.Config, tmp_path: Path) -> None:
    """A unix:// URL is reached over its socket."""
    path = tmp_path / "redis.sock"
    server = _server(pytestconfig, extra_args=["--unixsocket", str(path)])
    try:
        client = aioredis.Redis.from_url(f"unix://{path}", decode_responses=True)

        async def main() -> Any:
            pipeline = AutoPipeline(client)
            try:
                await pipeline.submit(CommandCall(("SET", "via", "socket")))
                return await pipeline.submit(CommandCall(("GET", "via")))
            finally:
                await pipeline.disconnect()

        assert asyncio.run(main()) == "socket"
    finally:
        server.close()


async def _until_blocked(url: str) -> None:
    """Return once the server reports a client blocked in BLPOP (the call was really sent)."""
    admin = redis.Redis.from_url(url)
    try:
        await await_for(lambda: bool(admin.info("clients")["blocked_clients"]))
    finally:
        admin.close()


def test_a_late_reply_times_out_and_the_next_call_reconnects(
    fresh_redis_server: RedisServer,
) -> None:
    """Redis paused past the socket timeout: calls in flight raise TimeoutError, later ones work."""
    url = fresh_redis_server.url
    client = aioredis.Redis.from_url(url, socket_timeout=0.3, decode_responses=True)

    async def main() -> tuple[list[Any], Any]:
        pipeline = AutoPipeline(client)
        try:
            assert await _ping(pipeline) is True
            fresh_redis_server.client().execute_command("CLIENT", "PAUSE", 1000, "ALL")
            late = await asyncio.gather(_ping(pipeline), _ping(pipeline), return_exceptions=True)
            fresh_redis_server.client().execute_command("CLIENT", "UNPAUSE")
            return late, await _ping(pipeline)
        finally:
            await pipeline.disconnect()

    late, after = asyncio.run(main())
    assert all(isinstance(r, redis.TimeoutError) for r in late)
    assert after is True


def test_restart_fails_calls_in_flight_then_reconnects(fresh_redis_server: RedisServer) -> None:
    """A killed server fails the calls waiting on it; after a restart the next call succeeds."""
    client = aioredis.Redis.from_url(fresh_redis_server.url, decode_responses=True)

    async def main() -> tuple[Any, Any, Any]:
        pipeline = AutoPipeline(client)
        try:
            await pipeline.submit(CommandCall(("SET", "k", "v")))
            blocked = asyncio.ensure_future(pipeline.submit(CommandCall(("BLPOP", "nothing", 0))))
            await _until_blocked(fresh_redis_server.url)
            fresh_redis_server.kill()
            lost = await asyncio.gather(blocked, return_exceptions=True)
            down = await asyncio.gather(_ping(pipeline), return_exceptions=True)
            fresh_redis_server.start()
            return lost[0], down[0], await _ping(pipeline)
        finally:
            await pipeline.disconnect()

    lost, down, after = asyncio.run(main())
    assert isinstance(lost, redis.ConnectionError)
    assert isinstance(down, redis.ConnectionError)
    assert after is True


def test_one_pipeline_serves_successive_event_loops(redis_url: str) -> None:
    """Used from a second event loop (a new asyncio.run), it reconnects on that loop."""
    pipeline = AutoPipeline(aioredis.Redis.from_url(redis_url, decode_responses=True))
    assert asyncio.run(_ping(pipeline)) is True
    assert asyncio.run(_ping(pipeline)) is True


def test_pipelined_operations_share_the_auto_pipeline(redis_url: str) -> None:
    """Creates (the session and the user's index, two slots) from concurrent tasks ride the same
    batches as everything else, and every user's index ends up with its own session."""

    async def main() -> tuple[list[list[str]], list[str], list[int]]:
        hub, counting = _hub(redis_url)
        try:
            await hub.create("warm-up")  # the scripts are cached in Redis from here on
            counting.batches.clear()
            made = await asyncio.gather(*(hub.create(f"user{i}") for i in range(20)))
            listed = [
                [info.storage_id for info in await hub.user_sessions.list(f"user{i}")]
                for i in range(20)
            ]
            return listed, [s.storage_id for s, _ in made], counting.batches
        finally:
            await hub.aclose()

    listed, storage_ids, batches = asyncio.run(main())
    assert listed == [[storage_id] for storage_id in storage_ids]
    assert sum(batches[:2]) >= 20 * 2  # each create is at least two calls...
    assert max(batches) > 2  # ...and creates from different tasks shared a write


def test_a_pipelined_operation_fails_whole_when_redis_is_gone(
    fresh_redis_server: RedisServer,
) -> None:
    """With the server gone every call of a multi-call operation answers with a connection error
    (the circuit's signal), and none is left waiting."""

    async def main() -> list[Any]:
        hub = AsyncSessionHub(build_settings(fresh_redis_server.url))
        try:
            await hub.create("alice")
            fresh_redis_server.kill()
            assert hub._calls is not None
            return await hub._calls.submit_all([CommandCall(("PING",))] * 3)
        finally:
            await hub.aclose()

    replies = asyncio.run(main())
    assert len(replies) == 3
    assert all(isinstance(r, redis.ConnectionError) for r in replies)


def test_a_cancelled_multi_call_operation_leaves_the_pipeline_clean(redis_url: str) -> None:
    """Cancelling a caller mid-way drops its pending replies quietly; later calls still match
    their own replies."""

    async def main() -> tuple[list[Any], Any]:
        loop = asyncio.get_running_loop()
        problems: list[Any] = []
        loop.set_exception_handler(lambda _loop, context: problems.append(context))
        hub = AsyncSessionHub(build_settings(redis_url))
        try:
            assert hub._calls is not None
            calls = [CommandCall(("BLPOP", "nothing-here", "0.3")), CommandCall(("PING",))]
            task = asyncio.create_task(hub._calls.submit_all(calls))
            await _until_blocked(redis_url)  # mid-way: sent, its replies not come yet
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            echo = await hub._calls.submit(CommandCall(("ECHO", "after")))
            # Every earlier reply was read before ECHO's: what is left to report is a future
            # nobody retrieved, reported when it is collected.
            gc.collect()
            await asyncio.sleep(0)
            return problems, echo
        finally:
            await hub.aclose()

    problems, echo = asyncio.run(main())
    assert echo == "after"
    assert problems == []
