"""REDIS.WAIT_REPLICAS: a login, a logout and a revoke return only once the replicas have them,
so a failover right after cannot lose a login or bring a revoked session back."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis

from helpers import build_settings, hub_factory
from redis_server import RedisServer, cluster_node_id, errors_answered, wait_replicated
from topology_fixtures import Topology, make_topology

MakeHub = Any


@pytest.fixture(params=["sentinel", "cluster"])
def replicated(request: pytest.FixtureRequest) -> Topology:
    """Sentinel's master and replica, or the cluster's masters with a replica each, emptied."""
    made = make_topology(request.param, request)
    made.flush()
    return made


@pytest.fixture(params=["sync", "async"])
def make_hub(request: pytest.FixtureRequest, replicated: Topology) -> Iterator[MakeHub]:
    """Hubs on the replicated topology with WAIT_REPLICAS 1."""

    def settings(**sections: dict[str, Any]) -> Any:
        return replicated.settings(redis={"WAIT_REPLICAS": 1}, **sections)

    with hub_factory(request.param, settings) as make:
        yield make


def replicas_holding(topology: Topology, key: str) -> int:
    """How many replicas of ``topology`` hold ``key`` now (READONLY lets a cluster replica
    answer for its master's slots; the others answer MOVED)."""
    masters = {m.port for m in topology.masters()}
    held = 0
    for node in topology.data_nodes:
        if node.port in masters or not node.is_running:
            continue
        client = node.client()
        try:
            if topology.name == "cluster":
                client.execute_command("READONLY")
            held += int(client.exists(key))
        except redis.ResponseError:
            pass
        finally:
            client.close()
    return held


def waits_sent(topology: Topology) -> int:
    """WAIT commands the masters have run."""
    total = 0
    for client in topology.clients():
        stats = client.info("commandstats").get("cmdstat_wait", {"calls": 0})
        total += int(stats["calls"])
    return total


def test_a_login_is_on_the_replica_when_it_returns(make_hub: MakeHub, replicated: Topology) -> None:
    """After a login returns, a replica has the session and the user's index; after a logout
    and a revoke return, no replica has the session any more."""
    hub = make_hub()
    before = waits_sent(replicated)
    session, cookie = hub.login("alice")
    keys = hub.manager.core.redis_ops.keys
    assert replicas_holding(replicated, keys.session(session.storage_id)) == 1
    assert replicas_holding(replicated, hub.manager.user_keys.sessions("alice")) == 1
    assert waits_sent(replicated) > before
    hub.destroy(session.storage_id)
    assert replicas_holding(replicated, keys.session(session.storage_id)) == 0
    other, _ = hub.login("alice")
    [listed] = hub.user_sessions.list("alice")
    assert hub.user_sessions.revoke("alice", listed.handle)
    assert replicas_holding(replicated, keys.session(other.storage_id)) == 0
    assert hub.open(cookie) is None
    assert hub.manager.core.mode == "redis", hub.manager.core.last_error


def test_too_few_replicas_still_log_in_and_say_so(
    fresh_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """With no replica to wait for, WAIT gives up after half the socket timeout: the login is
    kept on the master and the log says a failover could lose it."""
    settings = build_settings(
        fresh_redis_server.url, redis={"WAIT_REPLICAS": 1, "SOCKET_TIMEOUT": 0.2}
    )
    with hub_factory("sync", lambda **_: settings) as make:
        hub = make()
        _, cookie = hub.login("alice")
        assert hub.open(cookie) is not None
        assert hub.manager.core.mode == "redis"
    assert "0 of REDIS.WAIT_REPLICAS=1 replicas acknowledged" in caplog.text


def test_a_write_sent_again_after_a_script_flush_is_waited_for(
    make_hub: MakeHub, replicated: Topology, caplog: pytest.LogCaptureFixture
) -> None:
    """After SCRIPT FLUSH a login's scripts go again as EVAL, and a WAIT of their own follows
    them: with the replicas frozen it reports that none has the login (the WAIT pipelined
    before the EVAL counted only writes the replicas had acknowledged already)."""
    hub = make_hub()
    hub.login("warm")  # every connection made
    for client in replicated.clients():
        client.script_flush()
    for master in replicated.masters():
        wait_replicated(master)  # every write so far acknowledged by its replica
    masters = {m.port for m in replicated.masters()}
    replicas = [n for n in replicated.data_nodes if n.is_running and n.port not in masters]
    for replica in replicas:
        replica.freeze()
    try:
        caplog.clear()
        hub.login("alice")
    finally:
        for replica in replicas:
            replica.thaw()
    assert "0 of REDIS.WAIT_REPLICAS=1 replicas acknowledged" in caplog.text
    assert hub.manager.core.mode == "redis", hub.manager.core.last_error


def _replica_of(master: RedisServer, nodes: list[RedisServer]) -> RedisServer:
    """The running node that replicates ``master`` now."""
    client = master.client(decode_responses=True)
    try:
        port = int(client.info("replication")["slave0"]["port"])
    finally:
        client.close()
    return next(n for n in nodes if n.port == port and n.is_running)


def _log_in_unacknowledged(
    hub: Any,
    user: str,
    replicated: Topology,
    master: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Log ``user`` in while ``master``'s replica is frozen (every earlier write acknowledged):
    the login is served by Redis and the log says no replica acknowledged it."""
    for each in replicated.masters():
        wait_replicated(each)
    replica = _replica_of(master, replicated.data_nodes)
    replica.freeze()
    try:
        caplog.clear()
        hub.login(user)
    finally:
        replica.thaw()
    assert "0 of REDIS.WAIT_REPLICAS=1 replicas acknowledged" in caplog.text
    assert hub.manager.core.mode == "redis", hub.manager.core.last_error


@pytest.mark.parametrize("replicated", ["cluster"], indirect=True)
def test_a_node_not_sent_again_still_counts_after_a_script_flush(
    make_hub: MakeHub, replicated: Topology, caplog: pytest.LogCaptureFixture
) -> None:
    """A login that writes on two masters, one of which lost its scripts: the WAIT sent again
    with that one's EVAL does not hide that the other master's replica did not acknowledge."""
    hub = make_hub(session={"INDEX_SHARDS": 1})  # every session key in the slot of {0}
    router = replicated.router()
    assert isinstance(router, redis.cluster.RedisCluster)
    try:
        flushed = router.get_node_from_key("{0}").port
        user = next(
            u
            for u in (f"user{i}" for i in range(100))
            if router.get_node_from_key(hub.manager.user_keys.sessions(u)).port != flushed
        )
        waiting = router.get_node_from_key(hub.manager.user_keys.sessions(user)).port
    finally:
        router.close()
    by_port = {n.port: n for n in replicated.data_nodes}
    hub.login(user)  # both scripts cached on their masters, every connection made
    flushing = by_port[flushed].client()
    try:
        flushing.script_flush()
    finally:
        flushing.close()
    _log_in_unacknowledged(hub, user, replicated, by_port[waiting], caplog)


def _move_slot(
    slot: int, source: RedisServer, target: RedisServer, masters: Sequence[RedisServer]
) -> None:
    """Hand ``slot`` and its keys from ``source`` to ``target`` as a reshard does (``ASK``
    while it moves, then ``MOVED`` from every master)."""
    source_id, target_id = cluster_node_id(source), cluster_node_id(target)
    src, dst = source.client(), target.client()
    try:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        if keys:
            src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
    finally:
        src.close()
        dst.close()
    for master in masters:
        client = master.client()
        try:
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        finally:
            client.close()


@pytest.mark.parametrize("replicated", ["cluster"], indirect=True)
def test_a_write_whose_slot_moved_is_waited_for_where_it_landed(
    make_hub: MakeHub, replicated: Topology, caplog: pytest.LogCaptureFixture
) -> None:
    """A login whose session slot moved back to its first master since the hub last wrote there
    is refused with MOVED and written on that master: the WAIT behind it there reports that its
    frozen replica does not have the login (the count is not only the other nodes')."""
    hub = make_hub(session={"INDEX_SHARDS": 1})  # every session key in the slot of {0}
    router = replicated.router()
    assert isinstance(router, redis.cluster.RedisCluster)
    by_port = {n.port: n for n in replicated.data_nodes}
    try:
        home = by_port[router.get_node_from_key("{0}").port]
        away = next(m for m in replicated.masters() if m.port != home.port)
        user = next(
            u
            for u in (f"user{i}" for i in range(100))
            if router.get_node_from_key(hub.manager.user_keys.sessions(u)).port != home.port
        )
    finally:
        router.close()
    slot = redis.cluster.key_slot(b"{0}")
    hub.login(user)  # the scripts cached on home
    _move_slot(slot, home, away, replicated.masters())
    try:
        hub.login(user)  # the scripts cached on away, the hub's slot map pointing there
    finally:
        _move_slot(slot, away, home, replicated.masters())
    moved = errors_answered(away, "MOVED")
    _log_in_unacknowledged(hub, user, replicated, home, caplog)
    assert errors_answered(away, "MOVED") > moved


@pytest.mark.parametrize("replicated", ["cluster"], indirect=True)
def test_a_write_told_to_try_again_is_sent_again_once_the_slot_has_moved(
    make_hub: MakeHub, replicated: Topology
) -> None:
    """A login whose session slot is half moved (its count key still on the old master, the new
    session key on neither) is answered TRYAGAIN; sent again after a pause, it follows the
    finished move and is written and waited for on the new master, not served from memory."""
    hub = make_hub(session={"INDEX_SHARDS": 1})  # every session key in the slot of {0}
    router = replicated.router()
    assert isinstance(router, redis.cluster.RedisCluster)
    try:
        home = next(
            m for m in replicated.masters() if m.port == router.get_node_from_key("{0}").port
        )
    finally:
        router.close()
    away = next(m for m in replicated.masters() if m.port != home.port)
    slot = redis.cluster.key_slot(b"{0}")
    hub.login("alice")  # the slot's count key is on home now
    source_id, target_id = cluster_node_id(home), cluster_node_id(away)
    src, dst = home.client(), away.client()
    try:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    finally:
        src.close()
        dst.close()
    tried = errors_answered(home, "TRYAGAIN")
    finish = threading.Timer(0.2, _finish_move, (slot, home, away, replicated.masters()))
    finish.start()
    try:
        hub.login("bob")
    finally:
        finish.join()
        _move_slot(slot, away, home, replicated.masters())
    assert errors_answered(home, "TRYAGAIN") > tried
    assert hub.manager.core.mode == "redis", hub.manager.core.last_error
    assert hub.manager.core.last_error is None


def _finish_move(
    slot: int, source: RedisServer, target: RedisServer, masters: Sequence[RedisServer]
) -> None:
    """Move the slot's keys and hand it over, as the end of a reshard's step does."""
    src = source.client()
    try:
        keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        if keys:
            src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
    finally:
        src.close()
    for master in masters:
        client = master.client()
        try:
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", cluster_node_id(target))
        finally:
            client.close()
