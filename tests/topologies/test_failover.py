"""Failovers and a live reshard under steady requests: no exception reaches the caller,
requests are served (from memory while no master answers), traffic returns to Redis once the
new master is there, and every session made before is still valid, in Redis."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio.cluster

from helpers import await_for, build_settings, hub_factory, wait_for
from redis_server import (
    SENTINEL_MASTER,
    ClusterGroup,
    RedisServer,
    SentinelGroup,
    SentinelServer,
    cluster_node_id,
    wait_replicated,
)
from sessionhub.hub import AsyncSessionHub
from sessionhub.inbox import InboxNotifier
from sessionhub.stores.topology import async_client
from topology_fixtures import Topology, make_topology

SESSIONS = 20
PACE = 0.005
"""Seconds between the load's steps (each an open, a save and a create). Recovery ends only
after a pass in which nothing was written to memory (see RELIABILITY.md, "Known gaps"): at 2 ms
a fully loaded 2-core machine was seen to keep a blocking hub on memory for over a minute."""


class SteadyLoad:
    """A thread that keeps opening, changing and saving sessions, and creating new ones,
    recording whatever escapes a call and any session that failed to open."""

    def __init__(self, hub: Any, cookies: list[str]) -> None:
        self.hub = hub
        self.cookies = cookies
        self.errors: list[BaseException] = []
        self.lost: list[str] = []
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            cookie = self.cookies[n % len(self.cookies)]
            n += 1
            try:
                session = self.hub.open(cookie)
                if session is None:
                    self.lost.append(cookie)
                    continue
                session["n"] = n
                self.hub.save(session)
                self.hub.create("load")
                self.requests += 1
            except BaseException as exc:  # the assertion: nothing escapes a call
                self.errors.append(exc)
            # Steady, not a flood: a loop creating sessions at memory speed outruns any
            # recovery's copy (each creation during it is copied too) and it never ends.
            time.sleep(PACE)


def _prepared(hub: Any) -> tuple[list[str], list[str]]:
    """Sessions made before the failover: their cookies and their Redis keys."""
    made = [hub.create(f"user{i}", data={"before": i}) for i in range(SESSIONS)]
    keys = hub.manager.core.redis_ops.keys
    return [cookie for _, cookie in made], [keys.session(s.storage_id) for s, _ in made]


def _back_on_redis(hub: Any, cookie: str) -> bool:
    return hub.open(cookie) is not None and hub.manager.core.mode == "redis"


def _all_valid(hub: Any, cookies: list[str]) -> None:
    for i, cookie in enumerate(cookies):
        session = hub.open(cookie)
        assert session is not None
        assert session["before"] == i


def _stored(topology: Topology, keys: list[str]) -> int:
    """How many of ``keys`` the masters hold (a cluster master answers MOVED for the others)."""
    found = 0
    for client in topology.clients():
        for key in keys:
            with contextlib.suppress(redis.exceptions.MovedError):
                found += client.exists(key)
    return found


def _made_whole(request: pytest.FixtureRequest, name: str) -> Iterator[tuple[Topology, Any]]:
    """The ``name`` topology, emptied; after the test, its killed node is back and the group
    whole again (a master with a replica for every shard)."""
    group = request.getfixturevalue(f"{name}_group")
    group.settle()
    topology = make_topology(name, request)
    topology.flush()
    yield topology, group
    for node in group.data_nodes:
        if not node.is_running:
            node.start()  # back empty; the sentinels or the cluster make it a replica
    group.settle()


@pytest.fixture
def sentinel(request: pytest.FixtureRequest) -> Iterator[tuple[Topology, SentinelGroup]]:
    """The sentinel topology, made whole again after the test moved its master."""
    yield from _made_whole(request, "sentinel")


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Iterator[tuple[Topology, ClusterGroup]]:
    """The cluster topology, its killed node back as a replica after the test."""
    yield from _made_whole(request, "cluster")


def _ride(
    topology: Topology,
    kind: str,
    fail: Callable[[], object],
    failed_over: Callable[[], bool],
    before: Callable[[], object],
) -> None:
    """Make sessions, wait for ``before`` (replicas in sync), ``fail`` under steady load, wait
    for ``failed_over`` and for traffic back on Redis; then check nothing was lost."""
    with hub_factory(kind, topology.settings) as make:
        hub = make()
        cookies, keys = _prepared(hub)
        before()
        with SteadyLoad(hub, cookies) as load:
            wait_for(lambda: load.requests > 20)
            fail()
            wait_for(failed_over, timeout=30)
            # A failover plus the recovery that follows it: generous on a loaded 2-core machine.
            wait_for(lambda: _back_on_redis(hub, cookies[0]), timeout=60)
            served = load.requests
            wait_for(lambda: load.requests > served + 20)
        assert load.errors == []
        assert load.lost == []
        _all_valid(hub, cookies)
        assert _stored(topology, keys) == SESSIONS


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_sentinel_failover_command_costs_no_request(
    sentinel: tuple[Topology, SentinelGroup], kind: str
) -> None:
    """SENTINEL FAILOVER under load: every request answered, the new master takes the
    traffic, and the sessions made before are still there."""
    topology, group = sentinel
    old = group.master()
    _ride(
        topology,
        kind,
        lambda: group.sentinel_client().execute_command("SENTINEL", "FAILOVER", SENTINEL_MASTER),
        lambda: group.master() is not old,
        lambda: wait_replicated(old),
    )


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_sentinel_master_killed_costs_no_request(
    sentinel: tuple[Topology, SentinelGroup], kind: str
) -> None:
    """The master dies under load: requests are served from memory until the sentinels
    promote the replica, then from it; sessions made before are still valid, in Redis."""
    topology, group = sentinel
    old: RedisServer = group.master()
    _ride(
        topology,
        kind,
        old.kill,
        lambda: group.master() is not old,
        lambda: wait_replicated(old),
    )


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_cluster_master_killed_costs_no_request(
    cluster: tuple[Topology, ClusterGroup], kind: str
) -> None:
    """A cluster master dies under load: its slots are served from memory until its replica
    takes over, then from the replica; sessions made before are still valid, in Redis."""
    topology, group = cluster
    victim = group.masters()[0]

    def all_replicated() -> None:
        for master in group.masters():
            wait_replicated(master)

    _ride(topology, kind, victim.kill, lambda: len(group.masters()) == 3, all_replicated)


RESHARDED_SLOTS = 2000


def _fullest_and_emptiest(group: ClusterGroup) -> tuple[RedisServer, RedisServer]:
    """The masters serving the most and the fewest slots: resharding from one to the other
    never drains a master, however many tests reshard (a master without slots would lose its
    replica to replica migration, and the group would not be whole again)."""
    masters = group.masters()
    client = masters[0].client(decode_responses=True)
    try:
        ranges = client.execute_command("CLUSTER", "SLOTS")
    finally:
        client.close()
    served = dict.fromkeys((m.port for m in masters), 0)
    for start, end, owner, *_ in ranges:
        served[int(owner[1])] += int(end) - int(start) + 1
    ordered = sorted(masters, key=lambda m: served[m.port])
    return ordered[-1], ordered[0]


def _reshard_command(source: RedisServer, target: RedisServer) -> list[str]:
    """redis-cli moving RESHARDED_SLOTS slots, keys and all, from ``source`` to ``target``."""
    cli = shutil.which("redis-cli", path=str(Path(source.binary).parent)) or "redis-cli"
    return [
        cli,
        "--cluster",
        "reshard",
        f"{source.host}:{source.port}",
        "--cluster-from",
        cluster_node_id(source),
        "--cluster-to",
        cluster_node_id(target),
        "--cluster-slots",
        str(RESHARDED_SLOTS),
        "--cluster-yes",
    ]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_cluster_live_reshard_costs_no_request(
    cluster: tuple[Topology, ClusterGroup], kind: str
) -> None:
    """redis-cli --cluster reshard moves a few thousand slots, keys and all, between two masters
    under load: nothing escapes a call, the sessions made before are valid, and the session
    count is right afterwards."""
    topology, group = cluster
    source, target = _fullest_and_emptiest(group)
    with hub_factory(kind, topology.settings) as make:
        hub = make()
        cookies, keys = _prepared(hub)
        with SteadyLoad(hub, cookies) as load:
            wait_for(lambda: load.requests > 20)
            subprocess.run(
                _reshard_command(source, target), check=True, capture_output=True, timeout=300
            )
            served = load.requests
            wait_for(lambda: load.requests > served + 20)
        group.settle()
        wait_for(lambda: _back_on_redis(hub, cookies[0]), timeout=30)
        assert load.errors == []
        assert load.lost == []
        _all_valid(hub, cookies)
        assert _stored(topology, keys) == SESSIONS
        assert hub.stats()["total_sessions"] == SESSIONS + load.requests


WORKERS = 8


async def _concurrent_reshard(
    topology: Topology, command: list[str]
) -> tuple[list[BaseException], list[str | None], int]:
    """WORKERS asyncio tasks open, save and create sessions on one hub while ``command`` runs:
    what escaped them, why the core fell back to memory each time it did, and how many
    requests were served."""
    from sessionhub.hub import AsyncSessionHub

    hub = AsyncSessionHub(topology.settings(session={"LOCAL_CACHE_SIZE": 0}))
    try:
        await hub.start()
        cookies = [(await hub.create(f"user{i}", data={"before": i}))[1] for i in range(SESSIONS)]
        core = hub.manager.core
        fallbacks: list[str | None] = []
        wake = core.on_degraded
        assert wake is not None

        def degraded() -> None:
            fallbacks.append(core.last_error)
            wake()

        core.on_degraded = degraded
        errors: list[BaseException] = []
        served = 0
        done = asyncio.Event()

        async def worker(n: int) -> None:
            nonlocal served
            while not done.is_set():
                n += WORKERS
                try:
                    session = await hub.open(cookies[n % SESSIONS])
                    assert session is not None
                    session["n"] = n
                    await hub.save(session)
                    await hub.create("load")
                    served += 1
                except BaseException as exc:  # the assertion: nothing escapes a call
                    errors.append(exc)
                    return
                # A request answered from memory awaits nothing: without this, a worker that
                # never waits for Redis would keep the loop from ever seeing the reshard end.
                await asyncio.sleep(0)

        workers = [asyncio.create_task(worker(k)) for k in range(WORKERS)]
        reshard = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        assert await asyncio.wait_for(reshard.wait(), 300) == 0
        done.set()
        await asyncio.gather(*workers)
        for i, cookie in enumerate(cookies):
            session = await hub.open(cookie)
            assert session is not None
            assert session["before"] == i
        return errors, fallbacks, served
    finally:
        await hub.aclose()


def _redirects(group: ClusterGroup, kind: str) -> int:
    """How many ``kind`` (MOVED, ASK) replies the masters gave since their stats were reset."""
    stats = [master.client().info("errorstats") for master in group.masters()]
    return sum(int(info.get(f"errorstat_{kind}", {}).get("count", 0)) for info in stats)


def test_cluster_reshard_under_concurrent_asyncio_load_follows_moved(
    cluster: tuple[Topology, ClusterGroup],
) -> None:
    """Concurrent asyncio tasks keep working on one hub while redis-cli moves slots: their calls
    follow MOVED (and ASK) to the new owner, so none is served from memory and none fails."""
    topology, group = cluster
    source, target = _fullest_and_emptiest(group)
    command = _reshard_command(source, target)
    for master in group.masters():
        master.client().config_resetstat()
    errors, fallbacks, served = asyncio.run(_concurrent_reshard(topology, command))
    assert errors == []
    assert _redirects(group, "MOVED") > 0  # the hub's slot map was behind, and MOVED put it right
    assert fallbacks == []
    assert served > WORKERS


@pytest.fixture
def lone_sentinel(
    pytestconfig: pytest.Config,
) -> Iterator[tuple[RedisServer, RedisServer, SentinelServer]]:
    """Two masters and one sentinel naming the first: a group of this test's own, whose master
    the test moves by hand (one sentinel cannot fail over by itself)."""
    option = pytestconfig.getoption("redis_server_bin")
    binary = str(option) if option else None
    old, new = RedisServer(binary=binary).start(), RedisServer(binary=binary).start()
    watcher = SentinelServer(old.port, binary=binary).start()
    try:
        yield old, new, watcher
    finally:
        for server in (watcher, old, new):
            server.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_sentinel_master_demoted_without_cutting_connections(
    lone_sentinel: tuple[RedisServer, RedisServer, SentinelServer], kind: str
) -> None:
    """The master turns replica (REPLICAOF) while the hub's connections to it stay open and the
    sentinels name another: its READONLY sends the hub to the sentinels again, so the sessions
    made meanwhile end up on the new master and nothing escapes a call."""
    old, new, watcher = lone_sentinel
    settings = build_settings(
        None,
        redis={"MODE": "sentinel", "SENTINELS": [f"{watcher.host}:{watcher.port}"]}
        | {"SENTINEL_MASTER": SENTINEL_MASTER},
        session={"TYPE": "redis"},
    )
    with hub_factory(kind, lambda: settings) as make:
        hub = make()
        first, _ = hub.create("before")
        keys = hub.manager.core.redis_ops.keys
        assert old.client().exists(keys.session(first.storage_id))
        sentinel = watcher.client(decode_responses=True)
        sentinel.execute_command("SENTINEL", "REMOVE", SENTINEL_MASTER)
        sentinel.execute_command("SENTINEL", "MONITOR", SENTINEL_MASTER, new.host, new.port, 1)
        old.client().replicaof(new.host, new.port)
        made = [hub.create(f"after-{i}")[0] for i in range(3)]
        wait_for(lambda: hub.manager.core.mode == "redis", timeout=30)
        assert new.client().exists(*(keys.session(session.storage_id) for session in made)) == 3
        assert old.client().info("replication")["role"] == "slave"


def _subscription_master(topology: Topology, group: ClusterGroup) -> RedisServer:
    """The master that serves the revocation channel's slot: the node subscribers dial."""
    router = topology.router()
    try:
        assert isinstance(router, redis.cluster.RedisCluster)
        node = router.get_node_from_key("session:revoked")
    finally:
        router.close()
    return next(n for n in group.masters() if n.port == node.port)


def _cache_through(
    topology: Topology, kind: str, fail: Callable[[], object], failed_over: Callable[[], bool]
) -> None:
    """B caches three sessions; the master its subscription is on dies and is replaced; then A
    logs one out (its message goes through the new master) and another is deleted behind
    SessionHub's back (no message at all): B serves neither, and still serves the third."""
    with hub_factory(kind, topology.settings) as make:
        a, b = make(), make()
        cookies = [a.create(f"user{i}")[1] for i in range(3)]
        doomed, deleted, kept = cookies
        for cookie in cookies:
            assert b.open(cookie) is not None
        coherence = b.manager.core.coherence
        links = coherence.links
        for master in topology.masters():
            wait_replicated(master)
        fail()
        wait_for(failed_over, timeout=30)
        # The new subscription, on the new master, makes every copy B read before unconfirmed.
        wait_for(lambda: coherence.links > links and coherence.up, timeout=60)
        wait_for(lambda: _back_on_redis(a, kept) and _back_on_redis(b, kept), timeout=60)
        assert a.destroy(a.manager.storage_id_for_cookie(doomed))
        router = topology.router()
        try:
            router.delete(
                b.manager.core.redis_ops.keys.session(b.manager.storage_id_for_cookie(deleted))
            )
        finally:
            router.close()
        wait_for(lambda: b.open(doomed) is None)
        assert b.open(deleted) is None
        assert b.open(kept) is not None


def test_a_sentinel_failover_leaves_no_stale_copy_in_a_cache(
    sentinel: tuple[Topology, SentinelGroup],
) -> None:
    """The sentinel master dies: the caches of the blocking hubs serve nothing it had, once the
    new master answers, that was destroyed or deleted since."""
    topology, group = sentinel
    old = group.master()
    _cache_through(topology, "sync", old.kill, lambda: group.master() is not old)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_cluster_failover_leaves_no_stale_copy_in_a_cache(
    cluster: tuple[Topology, ClusterGroup], kind: str
) -> None:
    """The cluster master the subscriptions are on dies: the caches serve nothing, once its
    replica took over, that was destroyed or deleted since."""
    topology, group = cluster
    victim = _subscription_master(topology, group)
    _cache_through(topology, kind, victim.kill, lambda: len(group.masters()) == 3)


def test_the_inbox_notifier_subscribes_again_after_its_cluster_master_died(
    cluster: tuple[Topology, ClusterGroup],
) -> None:
    """The master the inbox notifier subscribed on dies: once its replica took over, a message
    published for a user wakes that user's stream again (the notifier, on a client of its own
    that nothing else refreshes, read the slot map again and found the new master)."""
    topology, group = cluster
    settings = topology.settings()
    hub = AsyncSessionHub(topology.settings(session={"TYPE": "memory"}))  # the inbox, no client
    channel = hub.features.inbox.keys.inbox_notify()
    router = topology.router()
    try:
        assert isinstance(router, redis.cluster.RedisCluster)
        port = router.get_node_from_key(channel).port
    finally:
        router.close()
    victim = next(n for n in group.masters() if n.port == port)

    async def main() -> None:
        client = async_client(settings.redis)
        assert isinstance(client, redis.asyncio.cluster.RedisCluster)
        await client.initialize()  # the slot map as it is before the failover
        notifier = InboxNotifier(hub.features.inbox, client)
        try:
            await notifier.start()
            async with notifier.subscription("bob") as woken:
                await asyncio.wait_for(woken.wait(), 10)  # subscribed: every stream woken once
                victim.kill()
                await await_for(lambda: len(group.masters()) == 3, timeout=30)
                publisher = topology.router()
                try:
                    for _ in range(60):  # until the notifier is subscribed again
                        woken.clear()
                        publisher.publish(channel, "bob")
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(woken.wait(), 0.5)
                            break
                    woken.clear()
                    publisher.publish(channel, "bob")
                    await asyncio.wait_for(woken.wait(), 10)
                finally:
                    publisher.close()
        finally:
            await notifier.aclose()
            await client.aclose()  # the notifier leaves a cluster client to its owner
            await hub.aclose()

    asyncio.run(main())
