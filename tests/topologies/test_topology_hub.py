"""Every feature of the library on standalone Redis, Sentinel and Redis Cluster, through both
the blocking and the asyncio hub: one suite, parametrised over the topologies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import MovedError

from helpers import Clock, await_for, build_settings, hub_factory, wait_for
from redis_server import ClusterGroup, RedisServer
from sessionhub.config import Settings
from sessionhub.exceptions import TooManyAttemptsError
from sessionhub.hub import AsyncSessionHub
from sessionhub.inbox.notifier import InboxNotifier
from sessionhub.presence import day_of
from sessionhub.stores.topology import LazyCluster
from topology_fixtures import ACL_PASSWORD, ACL_USER, Topology, documented_acl_line

MakeHub = Callable[..., Any]
LISTEN_DEADLINE = 10.0
"""How long a stream waits to be woken before the test fails (it takes milliseconds)."""


@pytest.fixture(params=["default-user", "acl-user"])
def user(request: pytest.FixtureRequest, topology: Topology) -> dict[str, Any]:
    """Redis's default user, or the prefix-limited user of docs/DEPLOYMENT.md's ACL line."""
    if request.param == "default-user":
        return {}
    topology.create_acl_user(documented_acl_line())
    return {"USERNAME": ACL_USER, "PASSWORD": ACL_PASSWORD}


@pytest.fixture(params=["sync", "async"])
def make_hub(
    request: pytest.FixtureRequest, topology: Topology, user: dict[str, Any]
) -> Iterator[MakeHub]:
    """Factory of hubs on the topology, as the user; the async one is driven from a loop
    thread."""

    def settings(**sections: dict[str, Any]) -> Settings:
        return topology.settings(**{**sections, "redis": {**user, **sections.get("redis", {})}})

    with hub_factory(request.param, settings) as make:
        yield make


def _on_redis(hub: Any) -> None:
    core = hub.manager.core
    assert core.mode == "redis", core.last_error


def test_create_open_save_destroy(make_hub: MakeHub) -> None:
    """A session opens by its cookie, keeps saved data and is gone after destroy."""
    hub = make_hub()
    session, cookie = hub.create("alice", user_agent="pytest", ip="127.0.0.1")
    session["theme"] = "dark"
    assert hub.save(session)
    opened = hub.open(cookie)
    assert opened is not None
    assert dict(opened) == {"theme": "dark"}
    assert opened.user_id == "alice"
    assert hub.destroy(opened.storage_id)
    assert hub.open(cookie) is None
    _on_redis(hub)


def test_the_cache_follows_what_another_instance_writes_and_destroys(make_hub: MakeHub) -> None:
    """B caches a session; A's save, A's increment and A's logout each reach B's cache through
    the revocation channel, on every topology."""
    a, b = make_hub(), make_hub()
    session, cookie = a.create("alice", data={"colour": "red", "n": 0})
    assert b.open(cookie)["colour"] == "red"
    hits = b.manager.core.cache_hits
    assert b.open(cookie)["colour"] == "red"
    assert b.manager.core.cache_hits == hits + 1  # B answers from its cache
    session["colour"] = "blue"
    assert a.save(session)
    wait_for(lambda: b.open(cookie)["colour"] == "blue")
    assert a.increment(session, "n", 5) == 5
    wait_for(lambda: b.open(cookie)["n"] == 5)
    assert a.destroy(session.storage_id)
    wait_for(lambda: b.open(cookie) is None)
    _on_redis(b)


def test_login_rotates_and_user_sessions_list_and_revoke(make_hub: MakeHub) -> None:
    """Login issues a new token; the user's index lists each session and revoke ends them."""
    hub = make_hub()
    anon, old_cookie = hub.create(None, data={"cart": [1]})
    first, first_cookie = hub.login("alice", previous=anon)
    assert hub.open(old_cookie) is None
    assert dict(hub.open(first_cookie)) == {"cart": [1]}
    _, second_cookie = hub.login("alice")
    listed = hub.user_sessions.list("alice")
    assert sorted(i.storage_id for i in listed) == sorted(
        [first.storage_id, hub.open(second_cookie).storage_id]
    )
    assert hub.user_sessions.revoke("alice", listed[0].handle)
    assert len(hub.user_sessions.list("alice")) == 1
    assert hub.user_sessions.revoke_all("alice") == 1
    assert hub.open(first_cookie) is None
    assert hub.open(second_cookie) is None
    _on_redis(hub)


def test_max_sessions_per_user_revokes_the_oldest(make_hub: MakeHub) -> None:
    """With MAX_PER_USER 2, a third login ends the user's oldest session."""
    hub = make_hub(session={"MAX_PER_USER": 2})
    hub.manager.core.clock = clock = Clock()
    cookies = []
    for _ in range(3):
        cookies.append(hub.login("alice")[1])
        clock.ms += 1  # distinct creation times order the sessions
    assert hub.open(cookies[0]) is None
    assert hub.open(cookies[1]) is not None
    assert hub.open(cookies[2]) is not None
    assert len(hub.user_sessions.list("alice")) == 2
    _on_redis(hub)


def test_presence_online_and_daily_users(make_hub: MakeHub) -> None:
    """Touched users are online, listed, have a status and count in the day's unique users."""
    hub = make_hub()
    for user in ("alice", "bob", "carol"):
        assert hub.presence.touch(user, force=True)
    assert hub.presence.online_count()["online_users"] == 3
    page = hub.presence.online_users(limit=2)
    rest = hub.presence.online_users(cursor=page["next_cursor"], limit=2)
    assert {u["user_id"] for u in page["users"] + rest["users"]} == {"alice", "bob", "carol"}
    assert hub.presence.status("bob")["online"] is True
    today = day_of(hub.manager.core.clock())
    assert hub.presence.daily(today)["active_users"] == 3
    hub.presence.offline("bob")
    assert hub.presence.online_count()["online_users"] == 2
    _on_redis(hub)


def test_presence_is_spread_over_every_master_and_summed(
    make_hub: MakeHub, topology: Topology
) -> None:
    """Presence of many users is spread over the masters (no key takes every write), and the
    online count, the paged list and the day's unique users sum all of it."""
    hub = make_hub()
    users = [f"user-{i}" for i in range(60)]
    for user in users:
        hub.presence.touch(user, force=True)
    holding = [c for c in topology.clients() if c.keys("session:*:presence:online")]
    assert len(holding) >= min(2, len(topology.masters()))
    assert hub.presence.online_count()["online_users"] == len(users)
    seen: list[str] = []
    cursor = None
    while True:
        page = hub.presence.online_users(cursor=cursor, limit=7)
        seen += [u["user_id"] for u in page["users"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(users)
    today = day_of(hub.manager.core.clock())
    assert hub.presence.daily(today)["active_users"] == len(users)
    _on_redis(hub)


def test_inbox_send_page_and_read(make_hub: MakeHub) -> None:
    """Messages sent to a user page back in order and are marked read up to a cursor."""
    hub = make_hub()
    sent = [hub.inbox.send("alice", {"n": i}) for i in range(3)]
    page = hub.inbox.page("alice")
    assert [m["body"] for m in page["messages"]] == [{"n": 0}, {"n": 1}, {"n": 2}]
    hub.inbox.mark_read("alice", up_to=sent[1]["id"])
    assert hub.inbox.read_cursor("alice") == sent[1]["id"]
    unread = hub.inbox.page("alice", unread=True)
    assert [m["id"] for m in unread["messages"]] == [sent[2]["id"]]
    _on_redis(hub)


def test_inbox_push_wakes_a_stream_in_another_process(topology: Topology) -> None:
    """A message sent through one hub wakes its user's live stream held by another (the inbox
    notifier's subscription on the topology, which the SSE endpoint waits on)."""

    async def main() -> None:
        settings = topology.settings()
        sender, receiver = AsyncSessionHub(settings), AsyncSessionHub(settings)
        notifier = InboxNotifier(receiver.features.inbox, receiver.client)
        try:
            await sender.start()
            await receiver.start()
            await notifier.start()
            async with notifier.subscription("bob") as woken:
                # Subscribed: the notifier wakes every stream once, for what it may have missed.
                await asyncio.wait_for(woken.wait(), LISTEN_DEADLINE)
                woken.clear()
                await sender.inbox.send("bob", "ping")
                await asyncio.wait_for(woken.wait(), LISTEN_DEADLINE)
        finally:
            await notifier.aclose()
            await sender.aclose()
            await receiver.aclose()

    asyncio.run(main())


def test_closing_the_inbox_notifier_leaves_the_hub_linked(topology: Topology) -> None:
    """Closing the inbox notifier, as the service does before the hub, closes nothing the hub
    uses: its revocation subscription stays on its first link and its calls still reach Redis."""

    async def main() -> None:
        hub = AsyncSessionHub(topology.settings())
        notifier = InboxNotifier(hub.features.inbox, hub.client)
        try:
            await hub.start()
            await notifier.start()
            coherence = hub.manager.core.coherence
            await await_for(lambda: coherence.up)
            links, revocations = coherence.links, coherence.revocations
            await notifier.aclose()
            publisher = topology.router()
            try:
                publisher.publish(hub.manager.core.redis_ops.keys.revoked(), "gone")
            finally:
                publisher.close()
            # A message heard after the close came on the link the hub had before it, or on a
            # new one, which would have counted as a link.
            await await_for(lambda: coherence.revocations > revocations)
            assert coherence.links == links
            _, cookie = await hub.create("alice")
            assert await hub.open(cookie) is not None
            _on_redis(hub)
        finally:
            await notifier.aclose()
            await hub.aclose()

    asyncio.run(main())


def test_settings_patch_and_replace(make_hub: MakeHub) -> None:
    """A user's settings keep a patch and a full replacement."""
    hub = make_hub()
    assert hub.preferences.get("alice")["theme"] == "system"
    hub.preferences.patch("alice", {"theme": "dark"})
    assert hub.preferences.get("alice")["theme"] == "dark"
    current = hub.preferences.get("alice")
    hub.preferences.replace("alice", {**current, "language": "fr"})
    assert hub.preferences.get("alice")["language"] == "fr"
    _on_redis(hub)


def test_stats_sum_every_shard_and_health_is_healthy(make_hub: MakeHub) -> None:
    """The session count is summed over shards living on every master; health is healthy."""
    hub = make_hub(session={"INDEX_SHARDS": 16})
    made = [hub.create(f"u{i}")[0] for i in range(20)]
    hub.destroy(made[0].storage_id)
    stats = hub.stats()
    assert stats["total_sessions"] == 19
    assert stats["redis_sessions"] == 19
    health = hub.health()
    assert health["status"] == "healthy"
    assert health["mode"] == "redis"


def test_login_throttle_counts_and_forgets(make_hub: MakeHub) -> None:
    """Failed login attempts are counted per user and address, and a success forgets them."""
    hub = make_hub(auth={"MAX_ATTEMPTS": 2})
    hub.login_attempts.attempt("alice", "10.0.0.1")
    hub.login_attempts.attempt("alice", "10.0.0.1")
    with pytest.raises(TooManyAttemptsError):
        hub.login_attempts.attempt("alice", "10.0.0.1")
    _on_redis(hub)


def test_works_after_every_node_forgets_its_scripts(make_hub: MakeHub, topology: Topology) -> None:
    """After SCRIPT FLUSH on every master (a restart, a failover) calls fall back to EVAL."""
    hub = make_hub()
    _, cookie = hub.create("alice")
    for client in topology.clients():
        client.script_flush()
    assert hub.open(cookie) is not None
    for client in topology.clients():
        client.script_flush()
    assert hub.stats()["total_sessions"] == 1
    _on_redis(hub)


def _on_cluster(group: ClusterGroup, **session: object) -> Settings:
    """Settings for a hub on ``group`` that probes every 0.1 s and never falls back to memory
    by configuration (``SESSION.TYPE: redis``)."""
    redis = {"MODE": "cluster", "CLUSTER_NODES": group.startup_nodes, "PROBE_INTERVAL": 0.1}
    return build_settings(None, redis=redis, session={"TYPE": "redis", **session})


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_hub_starts_while_its_cluster_is_down(unstarted_cluster: ClusterGroup, kind: str) -> None:
    """A hub whose Redis Cluster does not answer yet starts and serves sessions from memory;
    once the cluster is up the probe moves traffic to it, with memory's sessions written back."""
    settings = _on_cluster(unstarted_cluster)
    with hub_factory(kind, lambda: settings) as make:
        hub = make()
        session, cookie = hub.create("alice", data={"n": 1})
        assert hub.manager.core.mode == "degraded"
        assert dict(hub.open(cookie)) == {"n": 1}
        unstarted_cluster.start()
        wait_for(lambda: hub.manager.core.mode == "redis", timeout=15)
        assert dict(hub.open(cookie)) == {"n": 1}
        key = hub.manager.core.redis_ops.keys.session(session.storage_id)
        found = 0
        for master in unstarted_cluster.masters():
            with contextlib.suppress(MovedError):
                found += master.client().exists(key)
        assert found == 1


def _cluster_command(node: RedisServer, *args: object) -> None:
    client = node.client()
    try:
        client.execute_command("CLUSTER", *args)
    finally:
        client.close()


def _slots_mapped(hub: Any) -> int:
    """How many slots the slot map of ``hub``'s cluster client covers (0 before it read one)."""
    client = hub.client.built if isinstance(hub.client, LazyCluster) else hub.client
    return 0 if client is None else len(client.nodes_manager.slots_cache)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_hub_first_reaches_its_cluster_while_it_forms(
    unstarted_cluster: ClusterGroup, kind: str
) -> None:
    """A hub that first reaches its Redis Cluster while the slots are being assigned (one node
    has its slots, then all have, before they meet) serves from memory, and the probe moves it
    to the cluster once the cluster is whole: a slot map read on the way does not hold it back."""
    first, *others = unstarted_cluster.nodes
    for node in unstarted_cluster.nodes:
        node.start()
    share = REDIS_CLUSTER_HASH_SLOTS // len(unstarted_cluster.nodes) + 1
    ranges = [
        (i * share, min((i + 1) * share, REDIS_CLUSTER_HASH_SLOTS) - 1)
        for i in range(len(unstarted_cluster.nodes))
    ]
    _cluster_command(first, "ADDSLOTSRANGE", *ranges[0])
    settings = _on_cluster(unstarted_cluster)
    with hub_factory(kind, lambda: settings) as make:
        hub = make()
        _, cookie = hub.create("alice", data={"n": 1})
        assert hub.manager.core.mode == "degraded"
        assert hub.manager.core.fault is not None
        assert hub.manager.core.fault.name == "cluster down"  # a third of the slots served
        for node, (low, high) in zip(others, ranges[1:], strict=True):
            _cluster_command(node, "ADDSLOTSRANGE", low, high)
        # Every slot has a node, which no other node knows yet: the probe reads a map that
        # covers every slot from the three of them, and the calls are answered CLUSTERDOWN.
        wait_for(lambda: _slots_mapped(hub) == REDIS_CLUSTER_HASH_SLOTS)
        assert hub.manager.core.mode == "degraded"
        for node in others:
            _cluster_command(first, "MEET", node.host, node.port)
        unstarted_cluster.settle()
        wait_for(lambda: hub.manager.core.mode == "redis", timeout=15)
        assert dict(hub.open(cookie)) == {"n": 1}
        _, fresh = hub.create("carol")
        assert hub.open(fresh) is not None
        _on_redis(hub)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_slot_no_master_serves_is_an_outage(unstarted_cluster: ClusterGroup, kind: str) -> None:
    """CLUSTERDOWN (here a slot taken off its master with CLUSTER DELSLOTS, as when a master is
    lost before a replica takes over) sends requests to memory with health naming it; the slot
    given back, the probe returns traffic to Redis with memory's change written back."""
    unstarted_cluster.start()
    settings = _on_cluster(unstarted_cluster, REFRESH_THRESHOLD=0)  # every open asks Redis
    with hub_factory(kind, lambda: settings) as make:
        hub = make()
        session, cookie = hub.create("alice", data={"n": 1})
        key = hub.manager.core.redis_ops.keys.session(session.storage_id)
        slot = key_slot(key.encode())
        owner = next(m for m in unstarted_cluster.masters() if _holds(m, key))
        _cluster_command(owner, "DELSLOTS", slot)
        try:
            wait_for(lambda: unstarted_cluster.node_info(owner)["cluster_state"] == "fail")
            # No error: memory's copy if the revocation link still vouches for it, else signed
            # out for the outage (that link may run through the failed node).
            opened = hub.open(cookie)
            assert opened is None or dict(opened) == {"n": 1}
            assert "CLUSTERDOWN" in (hub.manager.core.last_error or "")
            _, bob = hub.create("bob", data={"n": 2})
        finally:
            _cluster_command(owner, "ADDSLOTS", slot)
        wait_for(lambda: unstarted_cluster.node_info(owner)["cluster_state"] == "ok")
        wait_for(lambda: hub.manager.core.mode == "redis", timeout=15)
        for signed_in, data in ((cookie, {"n": 1}), (bob, {"n": 2})):
            after = hub.open(signed_in)
            assert after is not None
            assert dict(after) == data
        assert _holds(owner, key)


def _holds(node: RedisServer, key: str) -> bool:
    """Whether ``key`` is stored on ``node`` (a node asked for another's key answers MOVED)."""
    client = node.client()
    try:
        return bool(client.exists(key))
    except MovedError:
        return False
    finally:
        client.close()
