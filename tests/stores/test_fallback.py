"""The memory fallback with a real redis-server that is killed and restarted mid-test."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from helpers import Blocking, LoopThread, build_settings, wait_for
from redis_server import RedisServer, free_port
from sessionhub.hub import AsyncSessionHub, SessionHub
from sessionhub.stores.autopipeline import AutoPipeline
from sessionhub.stores.base import call_name

PROBE = 0.5
FAST = 0.5  # no degraded call may come near the 2 s socket timeout the tests configure


@pytest.fixture(params=["sync", "async"])
def hub_on(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Factory of a hub (blocking, or asyncio driven from a loop thread) on a given server."""
    made: list[Any] = []
    loop = LoopThread()

    def make(server: RedisServer, url: str | None = None, **sections: dict[str, object]) -> Any:
        # These tests are about what a read does when Redis fails: every read must reach Redis,
        # so none is answered by the local cache.
        sections["session"] = {"REFRESH_THRESHOLD": 0, **sections.get("session", {})}
        settings = build_settings(url or server.url, redis={"PROBE_INTERVAL": PROBE}, **sections)
        hub: Any = (
            SessionHub(settings)
            if request.param == "sync"
            else Blocking(AsyncSessionHub(settings), loop)
        )
        made.append(hub)
        return hub

    yield make
    for hub in made:
        hub.close() if isinstance(hub, SessionHub) else hub.aclose()
    loop.close()


def timed(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; fail if it took long enough to have waited on Redis."""
    start = time.monotonic()
    result = fn()
    elapsed = time.monotonic() - start
    assert elapsed < FAST, f"call took {elapsed:.2f} s: it waited on Redis"
    return result


def test_outage_and_recovery(hub_on: Callable[..., Any], fresh_redis_server: RedisServer) -> None:
    """Sessions survive a Redis crash, outage work is copied back, outage logouts stay gone."""
    server = fresh_redis_server
    hub = hub_on(server)
    kept, kept_cookie = hub.create("alice", data={"n": 1})
    doomed, doomed_cookie = hub.create("bob")
    hub.open(doomed_cookie)  # seen by this process, so mirrored in memory

    server.kill()
    # The first call after the crash finds out and is served from memory at once.
    assert hub.open(kept_cookie) is not None
    assert hub.manager.core.mode == "degraded"

    opened = timed(lambda: hub.open(kept_cookie))
    assert opened is not None
    assert dict(opened) == {"n": 1}
    opened["n"] = 2
    assert timed(lambda: hub.save(opened))
    born, born_cookie = timed(lambda: hub.create("carol"))
    assert timed(lambda: hub.destroy(doomed.storage_id))
    assert timed(lambda: hub.open(doomed_cookie)) is None
    health = timed(hub.health)
    assert health["status"] == "degraded"
    assert timed(hub.stats)["redis_available"] is False

    server.restart()
    took = wait_for(lambda: hub.manager.core.mode == "redis", timeout=PROBE * 4)
    assert took < PROBE * 3

    client = server.client()
    keys = hub.manager.core.redis_ops.keys
    assert (
        client.hget(keys.session(kept.storage_id), "d:n") == b"2"
    )  # change made during the outage
    assert client.exists(keys.session(born.storage_id)) == 1  # outage-born session copied over
    assert client.exists(keys.session(doomed.storage_id)) == 0  # outage logout applied
    assert hub.open(doomed_cookie) is None
    assert dict(hub.open(born_cookie)) == {}
    assert hub.health()["status"] == "healthy"
    new, _ = hub.create("dave")
    assert client.exists(keys.session(new.storage_id)) == 1  # new sessions land in Redis again
    assert hub.stats()["total_sessions"] == 3  # alice, carol, dave


def test_without_migration_outage_sessions_stay_valid_in_memory(
    hub_on: Callable[..., Any], fresh_redis_server: RedisServer
) -> None:
    """With MIGRATE_ON_RECOVERY off, outage sessions live on in memory and lookups find them."""
    server = fresh_redis_server
    hub = hub_on(server, session={"MIGRATE_ON_RECOVERY": False})
    server.kill()
    hub.stats()  # trips the circuit
    born, cookie = hub.create("carol", data={"k": "v"})
    server.restart()
    wait_for(lambda: hub.manager.core.mode == "redis", timeout=PROBE * 4)
    assert server.client().exists(hub.manager.core.redis_ops.keys.session(born.storage_id)) == 0
    assert dict(hub.open(cookie)) == {"k": "v"}
    assert hub.stats() == {
        "total_sessions": 1,
        "redis_available": True,
        "mode": "redis",
        "redis_sessions": 0,
        "memory_sessions": 1,
    }
    assert hub.destroy(born.storage_id)
    assert hub.open(cookie) is None


def test_start_without_redis_then_redis_appears(hub_on: Callable[..., Any]) -> None:
    """With no Redis at start the hub serves from memory and moves to Redis when it appears."""
    server = RedisServer()
    try:
        server.start()
        server.stop()  # a known-free port with nothing listening
        hub = hub_on(server)
        session, cookie = hub.create("alice")
        assert hub.manager.core.mode == "degraded"
        assert hub.open(cookie) is not None
        server.start()
        wait_for(lambda: hub.manager.core.mode == "redis", timeout=PROBE * 4)
        assert (
            server.client().exists(hub.manager.core.redis_ops.keys.session(session.storage_id)) == 1
        )
    finally:
        server.close()


def test_repeated_outages(hub_on: Callable[..., Any]) -> None:
    """Three crash/restart cycles of a persistent Redis each degrade and recover cleanly."""
    server = RedisServer(extra_args=["--appendonly", "yes", "--appendfsync", "always"])
    try:
        server.start()
        hub = hub_on(server)
        cookies = []
        for _ in range(3):
            server.kill()
            hub.stats()
            assert hub.manager.core.mode == "degraded"
            cookies.append(timed(lambda: hub.create("alice"))[1])
            server.restart()
            wait_for(lambda: hub.manager.core.mode == "redis", timeout=PROBE * 4)
        assert all(hub.open(c) is not None for c in cookies)
        assert hub.stats()["redis_sessions"] == 3
    finally:
        server.close()


def test_degraded_mode_logs_the_seed_message(
    hub_on: Callable[..., Any], fresh_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Going degraded logs the seed's message once; session ids in logs are 8 chars and '...'."""
    caplog.set_level("INFO", logger="sessionhub")
    hub = hub_on(fresh_redis_server)
    fresh_redis_server.kill()
    hub.stats()
    hub.stats()
    session, _ = hub.create("alice")
    messages = [r.getMessage() for r in caplog.records]
    degraded = [m for m in messages if "Redis unavailable, sessions stored in memory" in m]
    assert len(degraded) == 1
    assert f"Session created in memory: {session.storage_id[:8]}..." in messages
    assert not any(session.storage_id in m for m in messages)


def test_recovery_ends_while_a_session_is_read_nonstop(
    hub_on: Callable[..., Any], fresh_redis_server: RedisServer
) -> None:
    """Reads that only slide a session do not hold traffic in memory: Redis takes over within a
    probe or two even while one session is read as fast as the hub can serve it."""
    server = fresh_redis_server
    hub = hub_on(server)
    _, cookie = hub.create("alice", data={"n": 1})
    stop = threading.Event()
    reads = [0]

    def hammer() -> None:
        while not stop.is_set():
            assert hub.open(cookie) is not None
            reads[0] += 1

    server.kill()
    assert hub.open(cookie) is not None  # finds the outage; the session is dirty from here on
    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        server.restart()
        wait_for(lambda: hub.manager.core.mode == "redis", timeout=PROBE * 4)
        before = reads[0]
        wait_for(lambda: reads[0] > before)  # still being read, now from Redis
    finally:
        stop.set()
        thread.join(timeout=10)
    assert dict(hub.open(cookie)) == {"n": 1}


def test_too_old_redis_is_served_around_and_named(
    hub_on: Callable[..., Any], fresh_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis older than the scripts need is not used: memory serves, health names the version,
    and the probe moves to Redis once the server is new enough."""
    import sessionhub.stores.redis as redis_store

    # This redis-server is new enough; asking for a future version makes it the old one.
    monkeypatch.setattr(redis_store, "MIN_REDIS_VERSION", (99, 0))
    hub = hub_on(fresh_redis_server)
    session, cookie = hub.create("alice", data={"n": 1})
    assert hub.manager.core.mode == "degraded"
    health = hub.health()
    assert health["status"] == "degraded"
    running = ".".join(map(str, redis_store.server_version(fresh_redis_server.client().info())))
    assert f"Redis {running} is too old" in str(health)
    assert "needs Redis 99.0 or newer" in str(health)
    assert fresh_redis_server.client().dbsize() == 0  # nothing was written with old commands
    assert dict(hub.open(cookie)) == {"n": 1}

    for _ in range(2):  # probes keep finding it too old
        assert hub.run(hub.manager.core.recover()) is False
    assert hub.manager.core.mode == "degraded"

    hub.manager.core.redis_ops.min_version = redis_store.MIN_REDIS_VERSION = (7, 0)
    wait_for(lambda: hub.manager.core.mode == "redis", timeout=PROBE * 4)
    assert dict(hub.open(cookie)) == {"n": 1}  # copied from memory on recovery
    assert fresh_redis_server.client().exists(
        hub.manager.core.redis_ops.keys.session(session.storage_id)
    )


def add_user_without_info(server: RedisServer) -> None:
    """An ACL user ``app`` that may run everything but INFO."""
    server.client().acl_setuser(
        "app",
        enabled=True,
        passwords=["+app-password"],
        keys=["*"],
        channels=["*"],  # the revocation channel, which every destroy publishes on
        commands=["+@all", "-info"],
    )


def test_a_user_denied_info_still_uses_redis_and_recovers(
    hub_on: Callable[..., Any], fresh_redis_server: RedisServer
) -> None:
    """An ACL user that may not run INFO skips the version check: sessions go to Redis, and
    traffic returns to Redis after an outage."""
    server = fresh_redis_server
    add_user_without_info(server)
    url = server.url.replace("redis://", "redis://app:app-password@", 1)
    hub = hub_on(server, url=url)
    _, cookie = hub.create("alice", data={"n": 1})
    assert hub.manager.core.mode == "redis"
    assert server.client().dbsize() > 0
    server.kill()
    assert hub.open(cookie) is not None
    assert hub.manager.core.mode == "degraded"
    server.restart()  # keeps nothing on disk: the ACL user has to be made again
    add_user_without_info(server)
    wait_for(lambda: hub.manager.core.mode == "redis", timeout=PROBE * 6)
    assert dict(hub.open(cookie)) == {"n": 1}


def test_server_version_reads_info_in_either_shape(fresh_redis_server: RedisServer) -> None:
    """The version comes from INFO's text or redis-py's parsed dict; none at all reads as 0."""
    from sessionhub.stores.redis import server_version

    parsed = fresh_redis_server.client().info("server")
    version = server_version(parsed)
    assert version >= (7, 0)
    assert ".".join(map(str, version)) == parsed["redis_version"]
    assert server_version("# Server\r\nredis_version:6.2.14\r\nredis_mode:standalone\r\n") == (
        6,
        2,
        14,
    )
    assert server_version("# Server\r\nredis_mode:standalone\r\n") == (0,)


def test_binding_a_new_session_to_a_user_during_an_outage(
    hub_on: Callable[..., Any], fresh_redis_server: RedisServer
) -> None:
    """A session made and bound to a user while Redis is down keeps its token, and both it and
    the user's index entry reach Redis on recovery."""
    server = fresh_redis_server
    hub = hub_on(server)
    server.kill()
    session, cookie = hub.create(data={"cart": [1]})
    assert hub.manager.core.mode == "degraded"
    assert hub.run(hub.manager.bind_user(session, "dora")) is True
    assert hub.open(cookie).user_id == "dora"
    server.restart()
    wait_for(lambda: hub.manager.core.mode == "redis", timeout=PROBE * 4)
    index = hub.manager.user_keys.sessions("dora")
    assert server.client().zrange(index, 0, -1) == [session.storage_id.encode()]
    assert [i.storage_id for i in hub.run(hub.manager.user_sessions_list("dora"))] == [
        session.storage_id
    ]
    reopened = hub.open(cookie)
    assert reopened.user_id == "dora"
    assert dict(reopened) == {"cart": [1]}


def test_a_destroy_on_one_hub_reaches_the_mirror_of_another(
    hub_on: Callable[..., Any], fresh_redis_server: RedisServer
) -> None:
    """A session destroyed through one hub is dropped from another hub's mirror over the
    revocation channel, so that hub does not serve it once Redis is down."""
    server = fresh_redis_server
    a, b = hub_on(server), hub_on(server)
    doomed, doomed_cookie = a.create("alice")
    _, kept_cookie = a.create("alice")
    assert b.open(doomed_cookie) is not None
    assert b.open(kept_cookie) is not None
    core = b.manager.core

    assert a.destroy(doomed.storage_id)
    wait_for(lambda: core.memory.peek(doomed.storage_id, core.clock()) is None)
    server.kill()

    assert b.open(doomed_cookie) is None
    assert b.open(kept_cookie) is not None
    assert core.mode == "degraded"


def test_recovery_writes_a_large_user_index_made_during_the_outage(
    fresh_redis_server: RedisServer,
) -> None:
    """Thousands of sessions one user made during an outage reach the user's index in Redis:
    recovery sends them in batches a Lua script can unpack, rather than staying degraded."""
    server = fresh_redis_server
    hub = SessionHub(build_settings(server.url, redis={"PROBE_INTERVAL": PROBE}))
    try:
        hub.create("warm-up")
        server.kill()
        made = [hub.create("crawler")[0] for _ in range(5000)]
        assert hub.manager.core.mode == "degraded"
        server.start()
        wait_for(lambda: hub.manager.core.mode == "redis", timeout=20)
        key = hub.manager.user_keys.sessions("crawler")
        assert server.client().zcard(key) == len(made)
    finally:
        hub.close()


def test_aclose_ends_maintenance_even_when_a_probe_swallows_the_cancel() -> None:
    """A cancel lost inside a probe (a library turning it into a timeout) still ends aclose()."""
    server = RedisServer()
    loop = LoopThread()
    try:
        server.start()
        server.stop()  # a known-free port with nothing listening: the hub probes it
        hub = AsyncSessionHub(build_settings(server.url, redis={"PROBE_INTERVAL": 0.05}))
        loop.run(hub.start())
        probing = threading.Event()
        assert hub.client is not None

        class SwallowingCancel(AutoPipeline):
            """The probe's calls go out through a client that turns a cancel into a timeout."""

            async def _slowly(self) -> None:
                probing.set()
                try:
                    await asyncio.sleep(0.2)
                except asyncio.CancelledError:  # what a socket timeout firing at cancel does
                    raise ConnectionError("timed out") from None

            async def execute(self, call: Any) -> Any:
                await self._slowly()
                return await super().execute(call)

        hub._calls = SwallowingCancel(hub.client)
        assert probing.wait(5)
        loop.run(hub.aclose())  # a loop still running would keep this waiting: LoopThread fails
    finally:
        loop.close()
        server.close()


class Recorder:
    """A core observer that writes down what it hears, in order: a call as its name (with
    ``!`` and the error's type when it failed), a mode change as ``degraded``/``recovered``."""

    def __init__(self) -> None:
        self.heard: list[str] = []

    def redis_call(self, call: Any, started: float, ended: float, error: Exception | None) -> None:
        assert started <= ended
        self.heard.append(call_name(call) + (f"!{type(error).__name__}" if error else ""))

    def mode_changed(self, degraded: bool) -> None:
        self.heard.append("degraded" if degraded else "recovered")


def test_the_observer_hears_of_each_call_but_not_the_probes(
    hub_on: Callable[..., Any], fresh_redis_server: RedisServer
) -> None:
    """Blocking and asyncio alike, the core's observer hears of each Redis call an operation
    makes (its name, and the error that tripped the circuit), and of the mode changes; not of
    the probe's and the recovery's own calls in between."""
    server = fresh_redis_server
    hub = hub_on(server)
    hub.create("bob")  # the asyncio hub starts (and checks Redis) on its first operation
    recorder = Recorder()
    hub.manager.core.observer = recorder
    _, cookie = hub.create("alice")
    assert hub.open(cookie) is not None
    assert recorder.heard == ["put+user_add", "load"]
    server.kill()
    assert timed(lambda: hub.open(cookie)) is not None  # trips the circuit, answers from memory
    time.sleep(3 * PROBE)  # probes fail meanwhile
    server.start()
    wait_for(lambda: not hub.manager.core.degraded)
    assert recorder.heard[2] == "load!ConnectionError"
    assert recorder.heard[3:] == ["degraded", "recovered"]


def test_health_names_the_latest_fault_while_still_degraded(
    hub_on: Callable[..., Any], fresh_redis_server: RedisServer
) -> None:
    """Redis killed, then back as a read-only replica of a master that is not there: the hub
    stays degraded, and once a probe has met the new fault health names it, not the first."""
    server = fresh_redis_server
    hub = hub_on(server)
    _, cookie = hub.create("alice")
    server.kill()
    assert hub.open(cookie) is not None
    assert "unreachable" in hub.health()["last_error"]
    server.extra_args = ("--replicaof", server.host, str(free_port()))  # nobody answers there
    server.start()
    wait_for(lambda: "read-only replica" in hub.health()["last_error"], timeout=PROBE * 6)
    health = hub.health()
    assert health["status"] == "degraded"
    assert "unreachable" not in health["last_error"]


BUSY_SCRIPT = "#!lua flags=no-writes,allow-oom\nwhile true do end"
"""A script that runs until SCRIPT KILL: Redis answers everyone else BUSY meanwhile."""


def test_health_names_a_later_fault_the_probe_has_no_name_for(
    hub_on: Callable[..., Any], fresh_redis_server: RedisServer
) -> None:
    """Redis out of memory, then busy running a script that does not end (an error SessionHub
    does not classify): once a probe has met it, health names it, not the earlier fault."""
    server = fresh_redis_server
    hub = hub_on(server)
    hub.create("alice")
    admin, runner = server.client(), server.client()
    admin.config_set("busy-reply-threshold", 10)
    admin.config_set("maxmemory", 1)  # under the default noeviction policy
    hub.create("bob")
    assert "out of memory" in hub.health()["last_error"]

    def busy() -> None:
        with contextlib.suppress(redis.ResponseError):  # SCRIPT KILL ends it with an error
            runner.eval(BUSY_SCRIPT, 0)

    script = threading.Thread(target=busy)
    script.start()
    try:
        wait_for(lambda: "BUSY" in hub.health()["last_error"], timeout=PROBE * 6)
    finally:
        wait_for(lambda: _killed(admin))
        script.join(timeout=10)
        admin.config_set("maxmemory", 0)
        admin.close()
        runner.close()
    health = hub.health()
    assert health["status"] == "degraded"
    assert "out of memory" not in health["last_error"]
    wait_for(lambda: hub.manager.core.mode == "redis", timeout=PROBE * 6)


def _killed(admin: redis.Redis) -> bool:
    """SCRIPT KILL, until the script has started and been killed."""
    try:
        admin.script_kill()
    except redis.ResponseError as exc:
        if "NOTBUSY" not in str(exc):  # anything but "no script running yet"
            raise
        return False
    return True
