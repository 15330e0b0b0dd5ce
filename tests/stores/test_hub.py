"""The library API over a real Redis, through both the blocking and the asyncio front ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from helpers import Clock, MakeHub, build_settings, every_string_in_redis
from redis_server import RedisServer
from sessionhub.hub import SessionHub


def test_unknown_but_well_formed_cookie_is_none(make_hub: MakeHub) -> None:
    """A validly signed cookie for a session that never existed opens nothing."""
    hub = make_hub()
    codec = hub.manager.codec
    assert hub.open(codec.cookie_value(codec.new_token())) is None


def test_no_raw_token_is_stored(make_hub: MakeHub, redis_server: RedisServer) -> None:
    """After many logins, no token (nor cookie) appears in any key, field, value or member."""
    hub = make_hub()
    tokens = []
    for i in range(20):
        session, cookie = hub.login(f"user{i}")
        session["k"] = "v"
        hub.save(session)
        tokens.append(hub.manager.codec.token_from_cookie(cookie))
    stored = b"\n".join(every_string_in_redis(redis_server.client()))
    assert stored  # the check below would pass vacuously on an empty Redis
    for token in tokens:
        assert token.encode() not in stored


def _clocked(hub: Any) -> Clock:
    """Put a test-driven clock on the hub: expiries are judged against it, not waited for."""
    clock = Clock()
    hub.manager.core.clock = clock
    return clock


def test_idle_expiry_slides_but_never_past_absolute_lifetime(make_hub: MakeHub) -> None:
    """Use extends the idle expiry, but the absolute lifetime ends the session regardless."""
    hub = make_hub(session={"EXPIRES": 1, "ABSOLUTE_LIFETIME": 2})
    clock = _clocked(hub)
    _, cookie = hub.create("alice")
    clock.ms += 600
    assert hub.open(cookie) is not None  # slides idle expiry to 1.6 s
    clock.ms += 600
    assert hub.open(cookie) is not None  # alive at 1.2 s only because it slid
    clock.ms += 900
    assert hub.open(cookie) is None  # 2.1 s: past the absolute lifetime


def test_idle_session_expires(make_hub: MakeHub) -> None:
    """A session not used within EXPIRES seconds is gone."""
    hub = make_hub(session={"EXPIRES": 1})
    clock = _clocked(hub)
    _, cookie = hub.create("alice")
    clock.ms += 999
    assert hub.open(cookie, touch=False) is not None
    clock.ms += 1
    assert hub.open(cookie) is None


def test_extend_moves_expiry_within_absolute(make_hub: MakeHub) -> None:
    """extend() sets the idle expiry to now + EXPIRES, capped by the absolute lifetime."""
    hub = make_hub(session={"EXPIRES": 60, "ABSOLUTE_LIFETIME": 90})
    session, _ = hub.create("alice")
    extended = hub.extend(session)
    assert extended is not None
    assert extended.record.expires_ms >= session.record.expires_ms
    assert extended.record.expires_ms <= session.record.absolute_expires_ms


def test_redis_ttl_follows_the_slide(make_hub: MakeHub, redis_server: RedisServer) -> None:
    """The Redis key's own TTL is the idle expiry, so Redis frees abandoned sessions itself."""
    hub = make_hub(session={"EXPIRES": 100})
    session, _ = hub.create("alice")
    key = hub.manager.core.redis_ops.keys.session(session.storage_id)
    ttl = redis_server.client().pttl(key)
    assert 95_000 < ttl <= 100_000


def test_concurrent_writers_of_different_keys_both_persist(make_hub: MakeHub) -> None:
    """Two requests holding the same session and changing different keys both persist."""
    hub = make_hub()
    _, cookie = hub.create("alice", data={"base": 0})
    first, second = hub.open(cookie), hub.open(cookie)
    first["a"] = 1
    second["b"] = 2
    assert hub.save(first)
    assert hub.save(second)
    assert dict(hub.open(cookie)) == {"base": 0, "a": 1, "b": 2}


def test_concurrent_threads_write_disjoint_keys(redis_url: str) -> None:
    """Sixteen threads each setting their own key on one session lose none of them."""

    hub = SessionHub(build_settings(redis_url))
    try:
        _, cookie = hub.create("alice")
        barrier = threading.Barrier(16)

        def worker(i: int) -> None:
            session = hub.open(cookie)
            assert session is not None
            session[f"k{i}"] = i
            barrier.wait()
            assert hub.save(session)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = hub.open(cookie)
        assert final is not None
        assert dict(final) == {f"k{i}": i for i in range(16)}
    finally:
        hub.close()


def test_save_after_logout_does_not_resurrect(make_hub: MakeHub) -> None:
    """A request that saves after another request logged the session out writes nothing."""
    hub = make_hub()
    session, cookie = hub.create("alice")
    hub.destroy(session.storage_id)
    session["late"] = True
    assert hub.save(session) is False
    assert hub.open(cookie) is None


def test_login_always_issues_a_new_token(make_hub: MakeHub) -> None:
    """Logging in with an existing session rotates the token and kills the old one."""
    hub = make_hub()
    anon, old_cookie = hub.create(None, data={"cart": [1]})
    session, new_cookie = hub.login("alice", previous=anon)
    assert new_cookie != old_cookie
    assert hub.open(old_cookie) is None
    assert dict(hub.open(new_cookie)) == {"cart": [1]}
    assert session.user_id == "alice"


def test_only_a_session_made_in_this_request_is_bound_without_a_new_token(
    make_hub: MakeHub,
) -> None:
    """bind_user keeps the token of a session created here and indexes it under the user; a
    session read back from the store, or one already bound, must go through login."""
    hub = make_hub()
    fresh, cookie = hub.create(None, data={"cart": [1]})
    assert hub.run(hub.manager.bind_user(fresh, "alice")) is True
    opened = hub.open(cookie)
    assert opened.user_id == "alice"
    assert dict(opened) == {"cart": [1]}
    assert [i.storage_id for i in hub.run(hub.manager.user_sessions_list("alice"))] == [
        fresh.storage_id
    ]
    with pytest.raises(ValueError, match="created in this request"):
        hub.run(hub.manager.bind_user(fresh, "bob"))  # saved and bound now
    _, other = hub.create(None)
    with pytest.raises(ValueError, match="created in this request"):
        hub.run(hub.manager.bind_user(hub.open(other), "bob"))  # read back: its token was sent
    assert hub.run(hub.manager.user_sessions_list("bob")) == []


def test_count_drops_destroyed_at_once_and_idled_out_when_their_bucket_ends(
    make_hub: MakeHub, redis_server: RedisServer
) -> None:
    """stats() counts from the shard buckets: a destroy at once, an idle expiry within a bucket."""
    hub = make_hub(session={"EXPIRES": 1, "INDEX_SHARDS": 4})
    clock = _clocked(hub)
    sessions = [hub.create(f"u{i}")[0] for i in range(5)]
    hub.destroy(sessions[0].storage_id)
    stats = hub.stats()
    assert stats["total_sessions"] == 4
    assert stats["redis_sessions"] == 4
    clock.ms += 1100  # one second of idle timeout plus a 100 ms bucket
    assert hub.stats()["total_sessions"] == 0
    client = redis_server.client()
    assert sum(client.hlen(f"session:{{{n}}}:cnt") for n in range(4)) == 0


def test_the_idle_expiry_is_the_keys_own_expiry_time(
    make_hub: MakeHub, redis_server: RedisServer
) -> None:
    """The hash keeps no copy of the idle expiry: the key's expiry time is it, and a read slides
    it; the user's session list reads it from there too."""
    hub = make_hub(session={"EXPIRES": 60, "REFRESH_THRESHOLD": 0})  # every read slides
    clock = _clocked(hub)
    session, cookie = hub.create("alice")
    key = hub.manager.core.redis_ops.keys.session(session.storage_id)
    client = redis_server.client()
    assert b"e" not in client.hkeys(key)
    assert client.pexpiretime(key) == session.record.expires_ms
    clock.ms += 10
    opened = hub.open(cookie)
    assert opened.record.expires_ms > session.record.expires_ms
    assert client.pexpiretime(key) == opened.record.expires_ms
    [listed] = hub.run(hub.manager.user_sessions_list("alice"))
    assert listed.record.expires_ms == opened.record.expires_ms


def test_the_user_index_scores_in_seconds_and_prunes_by_them(
    make_hub: MakeHub, redis_server: RedisServer
) -> None:
    """A user's index scores each session by its absolute expiry in whole seconds (rounded up,
    so never early), and a listing drops the entries whose second has passed."""
    hub = make_hub()
    kept, _ = hub.create("alice")
    ended, _ = hub.create("alice")
    key = hub.manager.user_keys.sessions("alice")
    client = redis_server.client()
    assert client.zscore(key, kept.storage_id) == -(-kept.record.absolute_expires_ms // 1000)
    client.zadd(key, {ended.storage_id: int(time.time()) - 2}, xx=True)  # its hash is still there
    listed = hub.run(hub.manager.user_sessions_list("alice"))
    assert [info.storage_id for info in listed] == [kept.storage_id]
    assert client.zrange(key, 0, -1) == [kept.storage_id.encode()]


def _buckets_of_live_sessions(client: redis.Redis, hub: Any) -> dict[str, int]:
    """What the count hashes must hold: every live session key's expiry, bucketed (by SCAN)."""
    ops = hub.manager.core.redis_ops
    expected: dict[str, int] = {}
    for key in client.scan_iter(match="session:{*}:s:*"):
        e = client.pexpiretime(key)
        end = -(-e // ops.bucket_ms) * ops.bucket_ms  # the bucket's end: e rounded up
        bucket = f"{ops.keys.counts_of(key.decode().rsplit(':', 1)[1])}|{end}"
        expected[bucket] = expected.get(bucket, 0) + 1
    return expected


def _stored_counts(client: redis.Redis, shards: int) -> dict[str, int]:
    return {
        f"session:{{{n}}}:cnt|{field.decode()}": int(value)
        for n in range(shards)
        for field, value in client.hgetall(f"session:{{{n}}}:cnt").items()
    }


def test_counts_follow_every_operation(make_hub: MakeHub, redis_server: RedisServer) -> None:
    """After creates, slides across buckets, saves, logins, regenerations and destroys, each
    bucket holds exactly the live sessions whose expiry ends in it."""
    hub = make_hub(session={"EXPIRES": 30, "INDEX_SHARDS": 2})  # 500 ms buckets
    client = redis_server.client()
    clock = _clocked(hub)
    made = [hub.create(f"u{i % 3}", data={"n": i}) for i in range(8)]
    clock.ms += 600  # every slide from here on crosses into a later bucket
    for _, cookie in made[:4]:
        opened = hub.open(cookie)
        opened["n"] = -1
        hub.save(opened)
    hub.login("u9", previous=made[4][0])
    hub.regenerate(made[5][0])
    hub.destroy(made[6][0].storage_id)
    hub.extend(made[7][0])
    expected = _buckets_of_live_sessions(client, hub)
    assert _stored_counts(client, 2) == expected
    assert sum(expected.values()) == 7 == hub.stats()["total_sessions"]


def test_every_key_of_an_operation_shares_one_hash_tag(make_hub: MakeHub) -> None:
    """Each session key and its index key hash to the same cluster slot, spread over shards."""
    hub = make_hub(session={"INDEX_SHARDS": 8})
    keys = hub.manager.core.redis_ops.keys
    slots = set()
    for _ in range(40):
        session, _ = hub.create("alice")
        slot = key_slot(keys.session(session.storage_id).encode())
        assert slot == key_slot(keys.counts_of(session.storage_id).encode())
        slots.add(slot)
    assert len(slots) > 1


def _commands_during(server: RedisServer, action: Callable[[], object]) -> list[str]:
    """The client commands Redis received while ``action`` ran (script internals excluded)."""
    client = server.client()
    marker_client = server.client()
    marker_client.ping()  # connect now, so its handshake is not counted
    seen: list[str] = []
    with client.monitor() as monitor:
        marker = b"sessionhub-test-marker"
        done = threading.Event()

        def listen() -> None:
            for event in monitor.listen():
                command = event["command"]
                if marker.decode() in command:
                    if done.is_set():
                        return
                    done.set()
                    continue
                if done.is_set() and event.get("client_type") != "lua":
                    seen.append(command.split(" ")[0].upper())

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        marker_client.echo(marker)
        assert done.wait(5), "MONITOR did not report the start marker"
        action()
        marker_client.echo(marker)
        listener.join(timeout=5)
    return [c for c in seen if c != "ECHO"]


def test_load_and_slide_is_one_round_trip(redis_server: RedisServer, redis_url: str) -> None:
    """Opening a session and sliding its expiry sends exactly one command (one EVALSHA)."""

    hub = SessionHub(build_settings(redis_url, session={"REFRESH_THRESHOLD": 0}))  # slides
    try:
        session, cookie = hub.create("alice")
        hub.open(cookie)  # warm-up: every script used below is now cached in Redis
        session["warm"] = 1
        hub.save(session)
        assert _commands_during(redis_server, lambda: hub.open(cookie)) == ["EVALSHA"]
        extend = _commands_during(redis_server, lambda: hub.open(cookie, force=True))
        assert extend == ["EVALSHA"]
        session["x"] = 1
        assert _commands_during(redis_server, lambda: hub.save(session)) == ["EVALSHA"]
    finally:
        hub.close()


class CountingConnection(redis.Connection):
    """A real connection that counts its writes: one write of packed commands is one round trip."""

    writes = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).writes += 1
        super().send_packed_command(command, check_health)


def test_create_with_user_index_is_one_round_trip(
    redis_server: RedisServer, redis_url: str
) -> None:
    """A user's new session and its entry in the user's index are written in one round trip."""

    pool = redis.ConnectionPool.from_url(
        redis_url, connection_class=CountingConnection, decode_responses=True
    )
    hub = SessionHub(build_settings(redis_url), client=redis.Redis(connection_pool=pool))
    try:
        hub.create("warm-up")  # the script is cached in Redis from here on
        CountingConnection.writes = 0
        commands = _commands_during(redis_server, lambda: hub.create("alice"))
        assert CountingConnection.writes == 1
        assert commands == ["EVALSHA", "EVALSHA"]
        assert [i.record.user_id for i in hub.user_sessions.list("alice")] == ["alice"]
    finally:
        hub.close()


def test_session_with_a_browser_user_agent_keeps_compact_encoding(
    redis_server: RedisServer, redis_url: str
) -> None:
    """A 130-byte User-Agent does not push the session hash out of Redis's listpack encoding."""
    user_agent = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 " * 2
    hub = SessionHub(build_settings(redis_url))
    try:
        session, cookie = hub.create("alice", data={"theme": "dark"}, user_agent=user_agent)
        assert hub.manager.core.redis_ops is not None
        key = hub.manager.core.redis_ops.keys.session(session.storage_id)
        assert redis_server.client().object("encoding", key) == b"listpack"
        opened = hub.open(cookie)
        assert opened is not None
        assert opened.record.user_agent == user_agent
    finally:
        hub.close()


def test_works_after_script_cache_flush(make_hub: MakeHub, redis_server: RedisServer) -> None:
    """After SCRIPT FLUSH (or a Redis restart) calls fall back to EVAL and keep working."""
    hub = make_hub()
    _, cookie = hub.create("alice")
    redis_server.client().script_flush()
    assert hub.open(cookie) is not None
    redis_server.client().script_flush()
    assert hub.stats()["total_sessions"] == 1


def test_memory_only_mode_needs_no_redis() -> None:
    """SESSION.TYPE = memory serves sessions with no Redis anywhere."""

    hub = SessionHub(build_settings(None))
    try:
        assert hub.client is None
        session, cookie = hub.create("alice")
        session["a"] = 1
        hub.save(session)
        assert dict(hub.open(cookie)) == {"a": 1}
        assert hub.health()["status"] == "healthy"
        assert hub.stats() == {
            "total_sessions": 1,
            "redis_available": False,
            "mode": "memory",
            "redis_sessions": None,
            "memory_sessions": 1,
        }
    finally:
        hub.close()


def test_values_round_trip_unicode_and_nesting(make_hub: MakeHub) -> None:
    """Unicode text, nested structures and nulls come back exactly."""
    hub = make_hub()
    session, cookie = hub.create("alice")
    session["name"] = "张三 ☃"
    session["nested"] = {"a": [1, 2, {"b": None}], "c": True}
    hub.save(session)
    assert dict(hub.open(cookie)) == {
        "name": "张三 ☃",
        "nested": {"a": [1, 2, {"b": None}], "c": True},
    }


def test_garbage_in_redis_does_not_crash(make_hub: MakeHub, redis_server: RedisServer) -> None:
    """A session hash missing its metadata is treated as gone, not as an error."""
    hub = make_hub(session={"REFRESH_THRESHOLD": 0})  # reads go to Redis, where it broke
    session, cookie = hub.create("alice")
    key = hub.manager.core.redis_ops.keys.session(session.storage_id)
    redis_server.client().hdel(key, "x")
    assert hub.open(cookie) is None
    assert redis_server.client().exists(key) == 0


def test_redis_errors_other_than_outages_propagate(
    make_hub: MakeHub, redis_server: RedisServer
) -> None:
    """A wrong-type key is a bug to report, not an outage: it raises rather than degrading."""
    hub = make_hub(session={"REFRESH_THRESHOLD": 0})  # reads go to Redis, where it broke
    session, cookie = hub.create("alice")
    key = hub.manager.core.redis_ops.keys.session(session.storage_id)
    client = redis_server.client()
    client.delete(key)
    client.set(key, "not a hash")
    with pytest.raises(redis.ResponseError):
        hub.open(cookie)
    assert hub.manager.core.mode == "redis"


def test_ended_buckets_are_dropped_a_bounded_number_per_count(
    make_hub: MakeHub, redis_server: RedisServer
) -> None:
    """Thousands of ended buckets never count; each stats() call drops a bounded number."""
    hub = make_hub(session={"INDEX_SHARDS": 1})
    hub.create("alice")
    client = redis_server.client()
    counts = "session:{0}:cnt"
    client.hset(counts, mapping={str(1000 + i): 3 for i in range(2500)})  # ended long ago
    assert hub.stats()["total_sessions"] == 1
    assert client.hlen(counts) == 1 + 1500  # the first call dropped 1,000 of 2,500
    assert hub.stats()["total_sessions"] == 1
    assert hub.stats()["total_sessions"] == 1
    assert client.hlen(counts) == 1
