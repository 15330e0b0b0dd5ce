"""Each Redis fault caused for real under the running service: what users get, what health says.

Every test answers its requests without a 500, checks that health names the fault, and that
traffic returns to Redis once the fault is gone (see docs/RELIABILITY.md).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from sessioncookie import as_session
from starlette.testclient import TestClient

from helpers import device, wait_for
from redis_server import HOST, RedisServer, free_port
from sessionhub.stores.base import Op
from tcp_proxy import TcpProxy

PROBE = 0.2
SHORT = {"PROBE_INTERVAL": PROBE, "SOCKET_TIMEOUT": 0.3, "CONNECT_TIMEOUT": 0.3}
"""Timeouts that make a hung Redis cost a fraction of a second."""

Fault = Callable[[redis.Redis], Any]


def health(client: TestClient) -> dict[str, Any]:
    data: dict[str, Any] = client.get("/api/health/redis").json()["data"]
    return data


def me(client: TestClient, cookie: str) -> str | None:
    """The user the service says ``cookie`` belongs to (``None``: 401); fails on anything else."""
    response = client.get("/api/auth/me", headers=as_session(cookie))
    assert response.status_code in (200, 401), response.text
    return response.json()["data"]["user_id"] if response.status_code == 200 else None


def assert_degraded_by(client: TestClient, named: str) -> None:
    """Health answers 503, ``status: degraded``, and names the fault in ``message`` and
    ``last_error``."""
    response = client.get("/api/health/redis")
    assert response.status_code == 503
    data = response.json()["data"]
    assert data["status"] == "degraded"
    assert data["mode"] == "degraded"
    assert named in data["message"]
    assert named in data["last_error"]


def served_from_memory(client: TestClient, alice: str, named: str) -> str:
    """During an outage: alice's session is still served, bob's new login works and is served,
    health names the fault; bob's cookie."""
    assert me(client, alice) == "alice"
    new = device(client, "bob")
    assert me(client, new) == "bob"
    assert_degraded_by(client, named)
    return new


def back_on_redis(client: TestClient) -> None:
    wait_for(lambda: client.get("/api/health/redis").status_code == 200, timeout=PROBE * 25)


def core_of(client: TestClient) -> Any:
    return client.app.state.hub.manager.core  # type: ignore[attr-defined]


def probes_of(client: TestClient) -> list[bool]:
    """The result of every probe the instance runs from now on (``True``: back on Redis); the
    probes themselves run unchanged against the real server."""
    core = core_of(client)
    results: list[bool] = []
    recover = core.recover

    def counted() -> Op[bool]:
        healthy = yield from recover()
        results.append(healthy)
        return healthy

    core.recover = counted
    return results


def session_key(client: TestClient, cookie: str) -> str:
    manager = client.app.state.hub.manager  # type: ignore[attr-defined]
    return str(manager.core.redis_ops.keys.session(manager.storage_id_for_cookie(cookie)))


def replica_of_nowhere(raw: redis.Redis) -> None:
    raw.replicaof(HOST, free_port())  # no master answers there: it stays a stale replica


def primary_again(raw: redis.Redis) -> None:
    raw.replicaof("NO", "ONE")


def out_of_memory(raw: redis.Redis) -> None:
    raw.config_set("maxmemory", 1)  # under the default noeviction policy


def memory_again(raw: redis.Redis) -> None:
    raw.config_set("maxmemory", 0)


def _rdb_path(raw: redis.Redis) -> Path:
    return Path(raw.config_get("dir")["dir"]) / raw.config_get("dbfilename")["dbfilename"]


def saves_failing(raw: redis.Redis) -> None:
    """A failed RDB save (the disk's fault; here a directory stands where the file must go)
    makes Redis refuse writes while ``stop-writes-on-bgsave-error`` is on, as by default."""
    raw.config_set("save", "3600 1")  # refusal needs a save point; the suite runs with none
    _rdb_path(raw).mkdir()  # the save's rename onto it fails
    raw.bgsave()
    wait_for(lambda: raw.info("persistence")["rdb_last_bgsave_status"] == "err")


def saves_again(raw: redis.Redis) -> None:
    _rdb_path(raw).rmdir()
    raw.bgsave()
    wait_for(lambda: raw.info("persistence")["rdb_last_bgsave_status"] == "ok")
    raw.config_set("save", "")


@pytest.mark.parametrize(
    ("cause", "clear", "named"),
    [
        (replica_of_nowhere, primary_again, "read-only replica"),
        (out_of_memory, memory_again, "out of memory"),
        (saves_failing, saves_again, "RDB save failed"),
    ],
    ids=["readonly", "oom", "misconf"],
)
def test_redis_refusing_writes(
    make_client: Callable[..., TestClient],
    fresh_redis_server: RedisServer,
    cause: Fault,
    clear: Fault,
    named: str,
) -> None:
    """A Redis that refuses writes still serves reads: sessions this instance never saw stay
    signed in, before and after it notices; logins, logouts and changes go to memory (a logout
    holds at once), and all of it lands in Redis afterwards."""
    server = fresh_redis_server
    first = make_client(server.url, redis={"PROBE_INTERVAL": PROBE})
    second = make_client(server.url, redis={"PROBE_INTERVAL": PROBE})
    # The second instance has never seen these sessions.
    bob, other, doomed = (device(first, "bob", agent) for agent in ("one", "two", "three"))
    raw = server.client()
    cause(raw)

    assert me(second, bob) == "bob"
    alice = device(second, "alice")
    assert me(second, alice) == "alice"
    patched = second.patch("/api/me/settings", json={"theme": "dark"}, headers=as_session(bob))
    assert patched.status_code == 200
    assert_degraded_by(second, named)
    assert me(second, other) == "bob"  # read from Redis with the circuit open
    assert second.post("/api/auth/logout", headers=as_session(doomed)).status_code == 200
    assert me(second, doomed) is None  # Redis still holds it, the tombstone in memory wins
    since = core_of(second).degraded_since
    # Probes run, and must keep traffic off a Redis that still refuses.
    probes = probes_of(second)
    wait_for(lambda: len(probes) >= 2)
    assert not any(probes)
    assert core_of(second).degraded_since == since
    assert_degraded_by(second, named)

    clear(raw)
    back_on_redis(second)
    assert raw.exists(session_key(second, alice)) == 1  # the login made meanwhile, written back
    assert me(first, alice) == "alice"
    assert me(first, bob) == "bob"
    assert raw.exists(session_key(second, doomed)) == 0  # the logout, written back
    assert me(first, doomed) is None
    settings = first.get("/api/me/settings", headers=as_session(bob)).json()["data"]
    assert settings["theme"] == "dark"


def test_frozen_redis(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """A Redis stopped with SIGSTOP costs one socket timeout; requests are then answered from
    memory, and SIGCONT brings traffic back within a probe."""
    server = fresh_redis_server
    client = make_client(server.url, redis=SHORT)
    alice = device(client, "alice")
    server.freeze()
    try:
        bob = served_from_memory(client, alice, "did not answer")
    finally:
        server.thaw()
    back_on_redis(client)
    assert me(client, bob) == "bob"
    assert server.client().exists(session_key(client, bob)) == 1


def test_slow_then_stalled_network(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """Behind a slow link requests wait for Redis; behind a stalled one they fail over to memory
    within the socket timeout; none hangs, and traffic returns when the link heals."""
    with contextlib.closing(TcpProxy(fresh_redis_server.port)) as proxy:
        client = make_client(proxy.url, redis=SHORT)
        alice = device(client, "alice")
        proxy.delay = 0.02  # well under the socket timeout: requests queue briefly
        assert me(client, alice) == "alice"
        assert device(client, "bob")
        assert core_of(client).degraded_since is None  # served by Redis throughout
        proxy.delay = 0.0
        proxy.stall()
        assert me(client, alice) == "alice"
        during = device(client, "bob")
        assert me(client, during) == "bob"
        assert_degraded_by(client, "did not answer")
        proxy.resume()
        back_on_redis(client)
        assert me(client, during) == "bob"


def test_redis_loading_its_dataset(
    make_client: Callable[..., TestClient], make_redis_server: Callable[..., RedisServer]
) -> None:
    """While a restarted Redis loads a large dataset (LOADING) requests are answered from
    memory and health says it is loading; once loaded, traffic returns to Redis."""
    server = make_redis_server(
        "--enable-debug-command",
        "yes",
        "--key-load-delay",
        "50",  # microseconds per key: 20,000 keys load for a few seconds
        "--loading-process-events-interval-bytes",
        "1024",  # answer clients (LOADING) while loading
    )
    client = make_client(server.url, redis=SHORT)
    alice = device(client, "alice")
    raw = server.client()
    raw.execute_command("DEBUG", "POPULATE", 20_000)
    raw.save()
    server.stop()
    server.start(loaded=False)
    assert server.client().info("persistence")["loading"] == 1

    bob = served_from_memory(client, alice, "loading")

    back_on_redis(client)
    assert me(client, alice) == "alice"
    assert me(client, bob) == "bob"
    assert server.client().exists(session_key(client, bob)) == 1


def test_script_cache_flushed(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """After SCRIPT FLUSH every script call falls back to EVAL once: no request fails and the
    service never leaves Redis."""
    client = make_client(fresh_redis_server.url, redis={"PROBE_INTERVAL": PROBE})
    raw = fresh_redis_server.client()
    alice = device(client, "alice")
    raw.script_flush()
    assert me(client, alice) == "alice"
    raw.script_flush()
    bob = device(client, "bob")  # a pipeline of two scripts
    assert me(client, bob) == "bob"
    assert client.post("/api/auth/logout", headers=as_session(bob)).status_code == 200
    assert core_of(client).degraded_since is None
    assert health(client)["status"] == "healthy"


def test_connections_killed(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """CLIENT KILL of every service connection loses no request and no session: the service
    reconnects (through memory for at most a probe if a request was in flight)."""
    client = make_client(fresh_redis_server.url, redis={"PROBE_INTERVAL": PROBE})
    raw = fresh_redis_server.client()
    alice = device(client, "alice")
    raw.client_kill_filter(skipme=True)
    assert me(client, alice) == "alice"
    bob = device(client, "bob")
    back_on_redis(client)
    assert me(client, bob) == "bob"
    assert raw.exists(session_key(client, bob)) == 1


def test_redis_busy_running_a_script(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """While a script that does not end keeps Redis busy (BUSY to every other client) requests
    are answered from memory and health says why; SCRIPT KILL brings traffic back to Redis."""
    server = fresh_redis_server
    client = make_client(server.url, redis={"PROBE_INTERVAL": PROBE})
    raw = server.client()
    alice = device(client, "alice")
    raw.config_set("busy-reply-threshold", 50)  # ms before others are told BUSY (default 5 s)
    looping = server.client()
    ended: list[BaseException] = []

    def loop() -> None:
        try:
            looping.eval("while true do end", 0)
        except redis.RedisError as exc:  # SCRIPT KILL ends it with an error
            ended.append(exc)

    runner = threading.Thread(target=loop, daemon=True)
    runner.start()
    wait_for(lambda: _busy(raw))
    try:
        bob = served_from_memory(client, alice, "busy running a script")
    finally:
        wait_for(lambda: _script_killed(raw))
        runner.join(timeout=5)
    assert ended, "the looping script ended only when killed"
    back_on_redis(client)
    assert me(client, bob) == "bob"
    assert raw.exists(session_key(client, bob)) == 1


def _busy(raw: redis.Redis) -> bool:
    try:
        raw.ping()
    except redis.ResponseError as exc:
        return str(exc).startswith("BUSY ")
    return False


def _script_killed(raw: redis.Redis) -> bool:
    try:
        raw.script_kill()
    except redis.ResponseError as exc:  # NOTBUSY: already ended
        return "NOTBUSY" in str(exc)
    return True


def test_maxclients_reached(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """When Redis refuses new connections (maxclients) requests are answered from memory and
    health says why; once connections are accepted again traffic returns to Redis."""
    client = make_client(fresh_redis_server.url, redis={"PROBE_INTERVAL": PROBE})
    raw = fresh_redis_server.client()
    alice = device(client, "alice")
    raw.config_set("maxclients", 1)  # the connections open now stay; no new one is accepted
    raw.client_kill_filter(_type="normal", skipme=True)
    try:
        bob = served_from_memory(client, alice, "maxclients")
    finally:
        raw.config_set("maxclients", 10_000)
    back_on_redis(client)
    assert me(client, bob) == "bob"


def test_eviction_under_allkeys_lru(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """Under allkeys-lru Redis evicts sessions, indexes and counts at random: nothing answers
    500, an evicted session is signed out, one still served is listed to its user, and counts
    heal once evicted sessions' buckets end."""
    client = make_client(
        fresh_redis_server.url,
        redis={"PROBE_INTERVAL": PROBE},
        session={"EXPIRES": 2, "REFRESH_THRESHOLD": 0},  # evictions send no message: read Redis
    )
    raw = fresh_redis_server.client()
    cookies = [device(client, user) for user in ("alice", "bob") * 5]
    keys = [session_key(client, cookie) for cookie in cookies]
    used = int(raw.info("memory")["used_memory"])
    raw.config_set("maxmemory-policy", "allkeys-lru")
    raw.config_set("maxmemory", used + 200_000)
    filler = 0
    while raw.exists(*keys) == len(keys):
        with raw.pipeline(transaction=False) as pipe:
            for _ in range(100):
                pipe.set(f"filler:{filler}", "x" * 1000)
                filler += 1
            pipe.execute()
    assert int(raw.info("stats")["evicted_keys"]) > 0

    users = [me(client, cookie) for cookie in cookies]
    assert None in users  # evicted sessions sign out, the others stay
    assert {"alice", "bob"} >= set(users) - {None}
    stats = client.get("/api/session/stats")
    assert stats.status_code == 200
    assert stats.json()["data"]["redis_sessions"] >= 0
    raw.config_set("maxmemory", 0)  # no more evictions from here
    for cookie in cookies:
        listed = client.get("/api/me/sessions", headers=as_session(cookie))
        assert listed.status_code in (200, 401)
        if listed.status_code == 200:  # a session served is listed, whatever its index lost
            assert [s["current"] for s in listed.json()["data"]["sessions"]].count(True) == 1
    assert device(client, "alice")

    def counted() -> int:
        return int(client.get("/api/session/stats").json()["data"]["redis_sessions"])

    wait_for(lambda: counted() == 0, timeout=10)  # every session idled out, its bucket ended
    fresh = [device(client, "alice") for _ in range(3)]
    assert counted() == 3
    assert all(me(client, cookie) == "alice" for cookie in fresh)
    assert core_of(client).degraded_since is None


def test_restarted_empty(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """A Redis restarted without persistence comes back empty: sessions held only there are
    signed out (401, never 500) and logins, counts and health work at once."""
    client = make_client(fresh_redis_server.url, redis={"PROBE_INTERVAL": PROBE})
    alice = device(client, "alice")
    fresh_redis_server.restart()
    assert me(client, alice) is None
    bob = device(client, "bob")
    assert me(client, bob) == "bob"
    assert client.get("/api/session/stats").json()["data"]["redis_sessions"] == 1
    assert health(client)["status"] == "healthy"


def test_durable_with_aof(
    make_client: Callable[..., TestClient], make_redis_server: Callable[..., RedisServer]
) -> None:
    """With AOF on, as docker-compose.yml runs Redis, a restart keeps every acknowledged
    session, setting and message: an instance started afterwards, with nothing in memory,
    finds them all in Redis."""
    server = make_redis_server("--appendonly", "yes", "--appendfsync", "everysec")
    client = make_client(server.url, redis={"PROBE_INTERVAL": PROBE})
    alice = device(client, "alice")
    bob = device(client, "bob")
    patched = client.patch("/api/me/settings", json={"theme": "dark"}, headers=as_session(alice))
    assert patched.status_code == 200
    sent = client.post(
        "/api/messages", json={"to": "bob", "body": {"text": "lunch?"}}, headers=as_session(alice)
    )
    assert sent.status_code == 201

    server.restart()

    later = make_client(server.url, redis={"PROBE_INTERVAL": PROBE})
    for instance in (client, later):
        assert me(instance, alice) == "alice"
        assert me(instance, bob) == "bob"
        settings = instance.get("/api/me/settings", headers=as_session(alice)).json()["data"]
        assert settings["theme"] == "dark"
        page = instance.get("/api/me/messages", headers=as_session(bob)).json()["data"]
        assert [m["id"] for m in page["messages"]] == [sent.json()["data"]["id"]]
        assert core_of(instance).degraded_since is None
