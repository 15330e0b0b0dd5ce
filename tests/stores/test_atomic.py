"""The atomic helpers (increment, append) in every configuration: plain, encrypted, compressed;
concurrent threads and asyncio tasks on several instances; on memory while Redis is down; and
the compare-and-set path that sealed values take."""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import pytest

from helpers import build_settings, run_threads, wait_for
from redis_server import RedisServer
from sessionhub import ConflictError, DataError
from sessionhub.frontends import arun_retried, run_retried
from sessionhub.hub import AsyncSessionHub, SessionHub
from sessionhub.stores.base import done, send
from sessionhub.stores.redis import SWAP_ATTEMPTS

KEY = {"ID": "k1", "KEY": base64.b64encode(os.urandom(32)).decode()}
CONFIGS: dict[str, dict[str, Any]] = {
    "plain": {"session": {"COMPRESS_THRESHOLD": 0}},
    "encrypted": {"session": {"COMPRESS_THRESHOLD": 0}, "encryption": {"KEYS": [KEY]}},
    "compressed": {"session": {"COMPRESS_THRESHOLD": 16}},
    "encrypted+compressed": {"session": {"COMPRESS_THRESHOLD": 16}, "encryption": {"KEYS": [KEY]}},
}
WORKERS = 16
ROUNDS = 8


def stored(hub: SessionHub, storage_id: str) -> dict[str, Any]:
    """The session's data as Redis holds it now (not any cached copy)."""
    session = hub.run(hub.manager.reload(storage_id))
    assert session is not None
    return dict(session)


def raw_field(server: RedisServer, hub: SessionHub, storage_id: str, key: str) -> bytes:
    """The bytes Redis holds for one data key of a session."""
    client = server.client()
    try:
        value = client.hget(hub.manager.core.redis_ops.keys.session(storage_id), f"d:{key}")
    finally:
        client.close()
    assert isinstance(value, bytes)
    return value


@pytest.mark.parametrize("config", CONFIGS)
def test_threads_on_two_instances_keep_every_increment(redis_url: str, config: str) -> None:
    """16 threads over two blocking hubs each increment one counter 8 times: every increment
    returns a value no other got, and the counter ends at 128."""
    hubs = [SessionHub(build_settings(redis_url, **CONFIGS[config])) for _ in range(2)]
    try:
        session, cookie = hubs[0].create("alice", data={"n": 0})
        seen: list[int | float | None] = []

        def bump(i: int) -> None:
            hub = hubs[i % 2]
            for _ in range(ROUNDS):
                mine = hub.open(cookie)
                seen.append(hub.increment(mine, "n"))

        run_threads(bump, WORKERS)
        total = WORKERS * ROUNDS
        assert sorted(v for v in seen if v is not None) == list(range(1, total + 1))
        assert stored(hubs[1], session.storage_id)["n"] == total
        wait_for(lambda: hubs[1].open(cookie)["n"] == total)  # the cache took the last write
    finally:
        for hub in hubs:
            hub.close()


@pytest.mark.parametrize("config", CONFIGS)
def test_asyncio_tasks_on_two_instances_keep_every_increment(redis_url: str, config: str) -> None:
    """16 asyncio tasks over two asyncio hubs each increment one counter 8 times: every
    increment returns a value no other got, and the counter ends at 128."""

    async def main() -> tuple[list[int | float | None], object]:
        settings = build_settings(redis_url, **CONFIGS[config])
        hubs = [AsyncSessionHub(settings) for _ in range(2)]
        try:
            session, cookie = await hubs[0].create("alice", data={"n": 0})

            async def bump(i: int) -> list[int | float | None]:
                hub, got = hubs[i % 2], []
                for _ in range(ROUNDS):
                    mine = await hub.open(cookie)
                    assert mine is not None
                    got.append(await hub.increment(mine, "n"))
                return got

            results = await asyncio.gather(*(bump(i) for i in range(WORKERS)))
            final = await hubs[1].run(hubs[1].manager.reload(session.storage_id))
            assert final is not None
            return [v for got in results for v in got], final["n"]
        finally:
            for hub in hubs:
                await hub.aclose()

    seen, final = asyncio.run(main())
    total = WORKERS * ROUNDS
    assert sorted(v for v in seen if v is not None) == list(range(1, total + 1))
    assert final == total


EXPECTED_PREFIX = {
    "plain": b"[",
    "encrypted": b"\x1eek1:",
    "compressed": b"\x1e",  # zlib (z) or zstd (s), whichever is installed
    "encrypted+compressed": b"\x1eek1:",
}


@pytest.mark.parametrize("config", CONFIGS)
def test_concurrent_appends_to_a_sealed_list_keep_every_element(
    redis_url: str, redis_server: RedisServer, config: str
) -> None:
    """Appends from 16 threads to a list stored sealed from the start (encrypted, or long enough
    to be compressed) all land once, and the list stays stored as the configuration says."""
    hub = SessionHub(build_settings(redis_url, **CONFIGS[config]))
    try:
        session, cookie = hub.create("alice", data={"seen": ["start-" + "x" * 40]})

        def add(i: int) -> None:
            for j in range(ROUNDS):
                hub.append(session, "seen", {"t": i, "j": j})

        run_threads(add, WORKERS)
        seen = stored(hub, session.storage_id)["seen"]
        assert seen[0] == "start-" + "x" * 40
        assert sorted((e["t"], e["j"]) for e in seen[1:]) == [
            (i, j) for i in range(WORKERS) for j in range(ROUNDS)
        ]
        assert raw_field(redis_server, hub, session.storage_id, "seen").startswith(
            EXPECTED_PREFIX[config]
        )
        assert hub.open(cookie)["seen"] == seen
    finally:
        hub.close()


@pytest.mark.parametrize("config", ["plain", "encrypted"])
def test_helpers_keep_working_on_memory_while_redis_is_down(
    fresh_redis_server: RedisServer, config: str
) -> None:
    """Redis killed: concurrent increments and appends are served from memory with none lost,
    and recovery copies the outcome back into the restarted Redis."""
    server = fresh_redis_server
    settings = build_settings(server.url, redis={"PROBE_INTERVAL": 0.2}, **CONFIGS[config])
    hub = SessionHub(settings)
    try:
        session, cookie = hub.create("alice", data={"n": 0})
        assert hub.increment(session, "n") == 1
        server.kill()
        seen: list[int | float | None] = []

        def bump(i: int) -> None:
            for j in range(ROUNDS):
                seen.append(hub.increment(hub.open(cookie), "n"))
                hub.append(session, "log", [i, j])

        run_threads(bump, WORKERS)
        assert hub.manager.core.mode == "degraded"
        total = 1 + WORKERS * ROUNDS
        assert sorted(v for v in seen if v is not None) == list(range(2, total + 1))
        server.start()
        wait_for(lambda: hub.manager.core.mode == "redis")
        data = stored(hub, session.storage_id)
        assert data["n"] == total
        assert sorted(map(tuple, data["log"])) == [
            (i, j) for i in range(WORKERS) for j in range(ROUNDS)
        ]
    finally:
        hub.close()


@pytest.mark.parametrize("config", CONFIGS)
def test_helpers_name_the_key_and_the_fix_when_the_value_is_of_another_kind(
    redis_url: str, config: str
) -> None:
    """Incrementing text or appending to a number is refused in every configuration, the error
    names the key and what to do, and nothing is written."""
    hub = SessionHub(build_settings(redis_url, **CONFIGS[config]))
    try:
        session, _ = hub.create("alice", data={"name": "x" * 40, "n": 1})
        with pytest.raises(DataError, match=r"increment session key 'name'.*not a number"):
            hub.increment(session, "name")
        with pytest.raises(DataError, match=r"append session key 'n'.*not a list.*store a list"):
            hub.append(session, "n", 2)
        assert stored(hub, session.storage_id) == {"name": "x" * 40, "n": 1}
    finally:
        hub.close()


@pytest.mark.parametrize("config", ["encrypted", "compressed"])
def test_a_writer_that_keeps_losing_the_compare_and_set_gives_up_with_a_clear_error(
    redis_url: str, config: str
) -> None:
    """Another instance changes the sealed value between each read and write of this one: after
    SWAP_ATTEMPTS lost writes the operation raises ConflictError naming the key and the fix,
    having written nothing itself."""
    settings = build_settings(redis_url, **CONFIGS[config])
    hub, other = SessionHub(settings), SessionHub(settings)
    try:
        long = ["y" * 40]  # compressed when COMPRESS_THRESHOLD is on: the script cannot append
        session, _ = hub.create("alice", data={"l": long})
        theirs = other.run(other.manager.reload(session.storage_id))
        assert theirs is not None
        op = hub.manager.append(session, "l", "mine")

        def race() -> None:
            call = op.send(None)
            while True:
                reply = hub.run(send(call))
                other.append(theirs, "l", "theirs")  # gets in between this read and write
                call = op.send(reply)

        with pytest.raises(ConflictError, match=r"append session key 'l'.*hub\.lock"):
            race()
        assert stored(hub, session.storage_id)["l"] == [*long, *["theirs"] * (SWAP_ATTEMPTS + 1)]
    finally:
        hub.close()
        other.close()


def test_a_lost_compare_and_set_is_retried_with_the_value_it_lost_to(redis_url: str) -> None:
    """One write of another instance between the read and the write: the next attempt starts
    from the value that won, so both increments count."""
    settings = build_settings(redis_url, **CONFIGS["encrypted"])
    hub, other = SessionHub(settings), SessionHub(settings)
    try:
        session, _ = hub.create("alice", data={"n": 10})
        theirs = other.run(other.manager.reload(session.storage_id))
        assert theirs is not None
        op = hub.manager.increment(session, "n", 5)
        reply = hub.run(send(op.send(None)))
        assert other.increment(theirs, "n", 100) == 110
        assert hub.run(_finish(op, reply)) == 115
        assert session["n"] == 115
        assert stored(hub, session.storage_id)["n"] == 115
    finally:
        hub.close()
        other.close()


def _finish(op: Any, reply: Any) -> Any:
    """The rest of a started operation, given the reply to the call it last yielded."""
    try:
        call = op.send(reply)
        while True:
            call = op.send((yield call))
    except StopIteration as stop:
        return stop.value


def test_the_front_ends_run_a_conflicted_operation_again_until_their_patience_ends() -> None:
    """run_retried and arun_retried run a fresh attempt after each ConflictError; with no
    patience left they raise it."""
    failures = [2]

    def attempt() -> Any:
        if failures[0]:
            failures[0] -= 1
            raise ConflictError("lost")
        return done("won")

    async def arun(op: Any) -> Any:
        return _complete(op)

    assert run_retried(_complete, attempt, patience=10) == "won"
    failures[0] = 2
    assert asyncio.run(arun_retried(arun, attempt, patience=10)) == "won"
    failures[0] = 1
    with pytest.raises(ConflictError, match="lost"):
        run_retried(_complete, attempt, patience=0)


def _complete(op: Any) -> Any:
    """Run an operation that makes no Redis call."""
    try:
        op.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the operation made a call")


@pytest.mark.parametrize("config", ["plain", "encrypted"])
def test_the_lock_yields_the_stored_data_in_every_configuration(
    redis_url: str, config: str
) -> None:
    """The session read under the lock carries its data, encrypted or not, and saving it
    changes only what changed."""
    hub = SessionHub(build_settings(redis_url, **CONFIGS[config]))
    try:
        session, _ = hub.create("alice", data={"cart": ["a"], "n": 1})
        with hub.lock(session) as current:
            assert current is not None
            assert dict(current) == {"cart": ["a"], "n": 1}
            current["cart"] = [*current["cart"], "b"]
            assert hub.save(current)
        assert stored(hub, session.storage_id) == {"cart": ["a", "b"], "n": 1}
    finally:
        hub.close()
