"""The local session cache: reads with no round trip, coherent across instances, never trusted
past a lost link or a Redis restart, and the atomic helpers and locks for concurrent writers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis

from helpers import Clock, MakeHub, build_settings, hub_factory, wait_for
from redis_server import RedisServer
from sessionhub import LockTimeoutError
from sessionhub.hub import AsyncSessionHub, SessionHub
from sessionhub.subscribers import PING_AFTER, SILENT_LIMIT, Liveness
from tcp_proxy import TcpProxy


def commands(server: RedisServer) -> int:
    """Commands Redis has run so far, but those of the connection that asks (HELLO, INFO, ...)
    and the subscribers' liveness pings."""
    client = server.client()
    try:
        stats: dict[str, Any] = client.info("commandstats")
    finally:
        client.close()
    own = ("cmdstat_info", "cmdstat_client", "cmdstat_hello", "cmdstat_ping")
    return sum(int(v["calls"]) for k, v in stats.items() if not k.startswith(own))


def scripts(server: RedisServer) -> int:
    """Script calls (EVALSHA, EVAL) Redis has run so far: one per round trip of a read."""
    client = server.client()
    try:
        stats: dict[str, Any] = client.info("commandstats")
    finally:
        client.close()
    return sum(int(stats.get(k, {}).get("calls", 0)) for k in ("cmdstat_evalsha", "cmdstat_eval"))


def storage_id_key(hub: Any, cookie: str) -> str:
    """The Redis key of the cookie's session."""
    manager = hub.manager
    return str(manager.core.redis_ops.keys.session(manager.storage_id_for_cookie(cookie)))


def test_a_cached_read_makes_no_redis_call(make_hub: MakeHub, redis_server: RedisServer) -> None:
    """Once a session was read, reads within the refresh threshold send Redis nothing."""
    hub = make_hub()
    _, cookie = hub.create("alice", data={"n": 1})
    assert hub.open(cookie) is not None  # read once from Redis: now in the cache
    before = commands(redis_server)
    for _ in range(20):
        session = hub.open(cookie)
        assert session is not None
        assert (session.user_id, session["n"]) == ("alice", 1)
    assert commands(redis_server) == before
    assert hub.manager.core.cache_hits >= 20


@pytest.mark.parametrize(
    "session_settings", [{"REFRESH_THRESHOLD": 0}, {"LOCAL_CACHE_SIZE": 0}], ids=str
)
def test_every_read_goes_to_redis_when_reads_slide_or_the_cache_is_off(
    make_hub: MakeHub, redis_server: RedisServer, session_settings: dict[str, int]
) -> None:
    """REFRESH_THRESHOLD 0 (every read slides) or LOCAL_CACHE_SIZE 0: one script per read."""
    hub = make_hub(session=session_settings)
    _, cookie = hub.create("alice")
    hub.open(cookie)
    before = scripts(redis_server)
    for _ in range(5):
        assert hub.open(cookie) is not None
    assert scripts(redis_server) - before == 5


def test_the_cache_keeps_only_local_cache_size_sessions(make_hub: MakeHub) -> None:
    """Beyond LOCAL_CACHE_SIZE sessions, the least recently read are read from Redis again."""
    hub = make_hub(session={"LOCAL_CACHE_SIZE": 2})
    cookies = [hub.create(f"user{i}")[1] for i in range(3)]
    for cookie in cookies:
        hub.open(cookie)
    hits = hub.manager.core.cache_hits
    hub.open(cookies[2])
    hub.open(cookies[1])
    assert hub.manager.core.cache_hits == hits + 2
    hub.open(cookies[0])  # pushed out by the two read after it
    assert hub.manager.core.cache_hits == hits + 2


def test_a_data_change_on_one_instance_is_seen_by_the_other(make_hub: MakeHub) -> None:
    """A saves a new value; B, which cached the old one, reads the new one."""
    a, b = make_hub(), make_hub()
    _, cookie = a.create("alice", data={"colour": "red"})
    assert b.open(cookie)["colour"] == "red"  # cached in B
    session = a.open(cookie)
    session["colour"] = "blue"
    assert a.save(session)
    wait_for(lambda: b.open(cookie)["colour"] == "blue")
    assert a.open(cookie)["colour"] == "blue"  # A's own copy took its own write


def test_a_logout_on_one_instance_is_refused_by_the_other(make_hub: MakeHub) -> None:
    """A destroys the session; B, which cached it, stops serving it."""
    a, b = make_hub(), make_hub()
    _, cookie = a.create("alice")
    assert b.open(cookie) is not None
    a.destroy(a.manager.storage_id_for_cookie(cookie))
    wait_for(lambda: b.open(cookie) is None)


def _revoke_device(a: Any, doomed: Any, keeper: Any) -> None:
    [info] = [i for i in a.user_sessions.list("alice") if i.storage_id == doomed.storage_id]
    assert a.user_sessions.revoke("alice", info.handle)


REVOKES: dict[str, Callable[[Any, Any, Any], object]] = {
    "revoke-device": _revoke_device,
    "revoke-others": lambda a, doomed, keeper: a.user_sessions.revoke_all(
        "alice", keep_storage_id=keeper.storage_id
    ),
    "revoke-all": lambda a, doomed, keeper: a.revoke_all("alice", "account_disabled"),
    "credentials-changed": lambda a, doomed, keeper: a.credentials_changed(
        "alice", keep=keeper.storage_id
    ),
    "regenerate": lambda a, doomed, keeper: a.regenerate(doomed),
    "session-limit": lambda a, doomed, keeper: a.create("alice"),
}


@pytest.mark.parametrize("kind", list(REVOKES))
def test_a_revoke_on_one_instance_is_refused_by_the_others_cache(
    make_hub: MakeHub, kind: str
) -> None:
    """A revokes a session (one device, every other one, every one, on a credential change, by
    a new token, or past MAX_PER_USER); B, which cached it, stops serving it and keeps serving
    the session nobody revoked."""
    a, b = make_hub(session={"MAX_PER_USER": 2}), make_hub(session={"MAX_PER_USER": 2})
    clock = Clock(a.manager.core.clock())
    a.manager.core.clock = clock  # the first session is the oldest, even within one ms
    doomed, doomed_cookie = a.create("alice")
    clock.ms += 1
    keeper, keeper_cookie = a.create("alice")
    clock.ms += 1
    assert b.open(doomed_cookie) is not None
    assert b.open(keeper_cookie) is not None
    hits = b.manager.core.cache_hits
    assert b.open(doomed_cookie) is not None
    assert b.manager.core.cache_hits == hits + 1  # served from B's cache until the revoke
    REVOKES[kind](a, doomed, keeper)
    wait_for(lambda: b.open(doomed_cookie) is None)
    assert (b.open(keeper_cookie) is None) == (kind == "revoke-all")


def test_an_expiry_set_on_one_instance_is_respected_by_the_other(make_hub: MakeHub) -> None:
    """A sets the session's expiry to a moment already past (Django's set_expiry): Redis drops
    it, and B, which cached it with a later expiry, stops serving it."""
    a, b = make_hub(), make_hub()
    session, cookie = a.create("alice", data={"n": 1})
    assert b.open(cookie) is not None
    session["n"] = 2
    assert a.save(session, expires_ms=a.manager.core.clock() - 1000)
    wait_for(lambda: b.open(cookie) is None)


def test_an_increment_on_one_instance_is_seen_by_the_other(make_hub: MakeHub) -> None:
    """An atomic helper's write reaches the other instances' caches like a save does."""
    a, b = make_hub(), make_hub()
    session, cookie = a.create("alice")
    assert b.open(cookie).get("n") is None
    assert a.increment(session, "n", 5) == 5
    wait_for(lambda: b.open(cookie).get("n") == 5)


def test_a_lost_link_makes_every_cached_copy_unconfirmed(
    make_hub: MakeHub, redis_server: RedisServer
) -> None:
    """While the invalidation link is down messages are lost, so after it the cache reads again.

    The session is deleted behind SessionHub's back while B's link is cut: no message reaches
    B, and only the rule "a new link makes every copy unconfirmed" keeps B from serving it.
    """
    b = make_hub()
    _, cookie = b.create("alice")
    assert b.open(cookie) is not None
    coherence = b.manager.core.coherence
    links = coherence.links
    admin = redis_server.client()
    try:
        admin.client_kill_filter(_type="pubsub")
        admin.delete(storage_id_key(b, cookie))
    finally:
        admin.close()
    wait_for(lambda: coherence.links > links and coherence.up)
    assert b.open(cookie) is None


def test_a_silent_subscription_is_pinged_then_given_up() -> None:
    """A subscription that hears nothing is pinged once per silence and counts as lost after
    SILENT_LIMIT seconds without a word; anything heard starts the count again."""
    clock = [0.0]
    alive = Liveness(lambda: clock[0])
    assert not alive.ping_due()
    clock[0] = PING_AFTER + 0.1
    assert alive.ping_due()
    assert not alive.ping_due()  # one ping per silence
    alive.heard()  # the answer
    clock[0] += PING_AFTER + 0.1
    assert alive.ping_due()
    clock[0] += SILENT_LIMIT
    with pytest.raises(redis.ConnectionError, match="no answer on the subscription"):
        alive.ping_due()


def test_a_redis_restart_makes_every_cached_copy_unconfirmed(
    fresh_redis_server: RedisServer,
) -> None:
    """Redis restarted without its data: the cache's copies are read again, and found gone."""
    with hub_factory("sync", lambda **s: build_settings(fresh_redis_server.url, **s)) as make:
        hub = make()
        _, cookie = hub.create("alice")
        assert hub.open(cookie) is not None
        coherence = hub.manager.core.coherence
        links = coherence.links
        fresh_redis_server.restart()
        wait_for(lambda: coherence.links > links and coherence.up)
        assert hub.open(cookie) is None


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_destroy_during_a_network_cut_is_not_served_from_the_cache_after_it(
    redis_url: str, redis_server: RedisServer, kind: str
) -> None:
    """B reaches Redis through a network that is cut silently (no reset, no close): B's
    subscriber notices by its pings, A logs a session out meanwhile, whose message B never
    gets, and once the network heals B does not serve its cached copy."""
    proxy = TcpProxy(redis_server.port)
    quick = {"SOCKET_TIMEOUT": 0.3, "CONNECT_TIMEOUT": 0.3}
    try:
        with (
            hub_factory(kind, lambda **s: build_settings(redis_url, **s)) as direct,
            hub_factory(kind, lambda **s: build_settings(proxy.url, redis=quick, **s)) as cut,
        ):
            a, b = direct(), cut()
            _, cookie = a.create("alice")
            _, kept = a.create("bob")
            assert b.open(cookie) is not None
            assert b.open(kept) is not None
            coherence = b.manager.core.coherence
            links = coherence.links
            proxy.cut()
            wait_for(lambda: not coherence.up)
            assert a.destroy(a.manager.storage_id_for_cookie(cookie))
            proxy.resume()
            wait_for(lambda: coherence.links > links and coherence.up)
            # The asyncio hub's pipelined connection may find out only now that it was cut: it
            # is then served from memory until its probe is back on Redis (the documented
            # limit of an instance cut off alone), never from the cache.
            wait_for(lambda: b.open(cookie) is None)
            assert b.manager.core.mode == "redis"
            assert b.open(kept) is not None
    finally:
        proxy.close()


def test_expiry_is_respected_and_a_cached_read_does_not_slide(
    make_hub: MakeHub, redis_server: RedisServer
) -> None:
    """A copy is served only until its idle expiry; within the threshold nothing slides it, and
    the first read past the threshold slides it in Redis."""
    hub = make_hub(session={"EXPIRES": 120, "REFRESH_THRESHOLD": 60})
    clock = Clock()
    hub.manager.core.clock = clock
    _, cookie = hub.create("alice")
    key = storage_id_key(hub, cookie)
    admin = redis_server.client(decode_responses=True)
    try:
        created = admin.hget(key, "l")
        clock.ms += 30_000
        assert hub.open(cookie) is not None
        assert admin.hget(key, "l") == created  # served from the cache: no slide
        clock.ms += 31_000
        assert hub.open(cookie) is not None
        assert admin.hget(key, "l") == str(clock.ms)  # past the threshold: slid in Redis
        # A read that does not slide may take a copy of any age, but never one past its expiry.
        clock.ms += 119_000
        assert hub.open(cookie, touch=False) is not None  # 119 s after the slide: alive
        clock.ms += 2_000
        assert hub.open(cookie, touch=False) is None  # 121 s: idled out, whatever is cached
    finally:
        admin.close()


def test_32_concurrent_increments_keep_every_increment(make_hub: MakeHub) -> None:
    """32 threads incrementing one counter of one session end with the exact total."""
    hub = make_hub()
    _, cookie = hub.create("alice", data={"n": 0})

    def bump() -> None:
        for _ in range(10):
            session = hub.open(cookie)
            hub.increment(session, "n")

    threads = [threading.Thread(target=bump) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    session = hub.open(cookie)
    wait_for(lambda: hub.open(cookie)["n"] == 320)
    assert hub.increment(session, "n", 0.5) == 320.5


def test_concurrent_appends_keep_every_element(make_hub: MakeHub) -> None:
    """Appends from many threads all land, each element once."""
    hub = make_hub()
    session, cookie = hub.create("alice")

    def add(i: int) -> None:
        for j in range(5):
            hub.append(session, "seen", {"t": i, "j": j})

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seen = hub.open(cookie)["seen"]
    assert sorted((e["t"], e["j"]) for e in seen) == [(i, j) for i in range(8) for j in range(5)]


def test_helpers_refuse_what_is_not_a_number_or_a_list(make_hub: MakeHub) -> None:
    """Incrementing text or appending to a number is a DataError, and changes nothing."""
    from sessionhub import DataError

    hub = make_hub()
    session, cookie = hub.create("alice", data={"name": "x", "n": 1})
    with pytest.raises(DataError):
        hub.increment(session, "name")
    with pytest.raises(DataError):
        hub.append(session, "n", 2)
    assert hub.open(cookie)["n"] == 1


def test_an_increment_is_not_written_back_by_a_later_save(make_hub: MakeHub) -> None:
    """The session object sees the helper's value, so saving it does not undo others' work."""
    a, b = make_hub(), make_hub()
    mine, cookie = a.create("alice", data={"n": 0})
    assert a.increment(mine, "n") == 1
    assert mine["n"] == 1
    assert b.increment(b.open(cookie), "n") == 2
    mine["other"] = True
    assert a.save(mine)
    wait_for(lambda: b.open(cookie).get("other") is True)
    assert b.open(cookie)["n"] == 2


def test_read_modify_write_under_the_lock_keeps_every_update(redis_url: str) -> None:
    """Requests that lock the session before reading and saving it lose no update."""
    hub = SessionHub(build_settings(redis_url))
    try:
        session, _ = hub.create("alice", data={"items": []})

        def work(i: int) -> None:
            for j in range(3):
                with hub.lock(session, block=30) as current:
                    assert current is not None
                    current["items"] = [*current["items"], f"{i}.{j}"]
                    hub.save(current)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with hub.lock(session) as current:
            assert current is not None
            assert len(current["items"]) == 24
    finally:
        hub.close()


def test_a_held_lock_times_out_with_a_clear_error(redis_url: str) -> None:
    """A lock another request holds past ``block`` raises LockTimeoutError; once released, it
    is free again."""
    hub = SessionHub(build_settings(redis_url))
    try:
        session, _ = hub.create("alice")
        with (
            hub.lock(session),
            pytest.raises(LockTimeoutError, match="locked by another request"),
            hub.lock(session, block=0.2),
        ):
            pass
        with hub.lock(session, block=0) as current:
            assert current is not None
    finally:
        hub.close()


def test_the_async_lock_serialises_and_times_out(redis_url: str) -> None:
    """The asyncio hub's lock keeps every update of concurrent tasks and times out the same."""

    async def main() -> tuple[int, bool]:
        hub = AsyncSessionHub(build_settings(redis_url))
        try:
            session, _ = await hub.create("alice", data={"n": 0})

            async def work() -> None:
                async with hub.lock(session, block=30) as current:
                    assert current is not None
                    current["n"] += 1
                    await asyncio.sleep(0)  # let the others try the lock meanwhile
                    await hub.save(current)

            await asyncio.gather(*(work() for _ in range(16)))
            timed_out = False
            async with hub.lock(session) as current:
                assert current is not None
                try:
                    async with hub.lock(session, block=0.1):
                        pass
                except LockTimeoutError:
                    timed_out = True
                return int(current["n"]), timed_out
        finally:
            await hub.aclose()

    assert asyncio.run(main()) == (16, True)


def test_a_lock_outliving_its_ttl_is_not_released_by_its_former_holder(
    redis_url: str, redis_server: RedisServer
) -> None:
    """The compare-and-delete release leaves a lock another request took after the ttl."""
    hub = SessionHub(build_settings(redis_url))
    admin = redis_server.client(decode_responses=True)
    try:
        session, _ = hub.create("alice")
        key = hub.manager.core.redis_ops.keys.lock(session.storage_id)
        with hub.lock(session, ttl=0.05):
            wait_for(lambda: admin.get(key) is None)
            admin.set(key, "someone-else")
        assert admin.get(key) == "someone-else"
    finally:
        admin.close()
        hub.close()


def test_the_memory_store_keeps_the_helpers_semantics(make_hub: MakeHub) -> None:
    """Without Redis (memory-only, as during an outage) the helpers behave as the scripts do."""
    from sessionhub import DataError

    hub = make_hub(session={"TYPE": "memory"})
    session, cookie = hub.create("alice", data={"n": 1, "name": "x"})
    assert hub.increment(session, "n", 2) == 3
    assert hub.append(session, "l", 1) == [1]
    assert hub.append(session, "l", "two") == [1, "two"]
    with pytest.raises(DataError):
        hub.increment(session, "name")
    stored = hub.open(cookie)
    assert (stored["n"], stored["l"]) == (3, [1, "two"])
