"""The asyncio hub on Redis Cluster: one auto-pipeline per master, so the calls of one loop turn
to one node share a write, and a call whose slot is being migrated follows ASK, then MOVED."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from helpers import CountingPipeline
from redis_server import ClusterGroup, RedisServer, cluster_node_id, errors_answered
from sessionhub.hub import AsyncSessionHub
from sessionhub.stores.cluster import AsyncClusterCalls
from topology_fixtures import Topology, make_topology

OPENS = 60


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Topology:
    """The cluster topology, emptied for this test."""
    made = make_topology("cluster", request)
    made.flush()
    return made


def _hub(cluster: Topology) -> AsyncSessionHub:
    # Every open slides and nothing is cached locally, so every open is one call to count.
    return AsyncSessionHub(
        cluster.settings(session={"REFRESH_THRESHOLD": 0, "LOCAL_CACHE_SIZE": 0})
    )


def _cluster_calls(hub: AsyncSessionHub) -> AsyncClusterCalls:
    assert isinstance(hub._calls, AsyncClusterCalls)
    return hub._calls


def test_calls_of_one_loop_turn_to_one_node_share_one_write(cluster: Topology) -> None:
    """Sixty concurrent opens spread over the three masters: each master is sent its share in
    one write, and every caller gets its own session back."""

    async def main() -> tuple[list[Any], dict[str, list[int]]]:
        hub = _hub(cluster)
        try:
            made = [await hub.create(f"user{i}", data={"i": i}) for i in range(OPENS)]
            # The load script is cached on every master from here on: no EVAL retry to count.
            await asyncio.gather(*(hub.open(cookie) for _, cookie in made))
            calls = _cluster_calls(hub)
            assert hub.client is not None
            counting: dict[str, CountingPipeline] = {}
            for node in hub.client.get_primaries():
                used = calls.pipeline(node)
                await used.disconnect()
                counting[node.name] = CountingPipeline(used.client)
                calls._pipelines[node.name] = counting[node.name]
            opened = await asyncio.gather(*(hub.open(cookie) for _, cookie in made))
            return opened, {name: pipeline.batches for name, pipeline in counting.items()}
        finally:
            await hub.aclose()

    opened, batches = asyncio.run(main())
    assert [session["i"] for session in opened] == list(range(OPENS))
    assert len(batches) == 3
    assert {name: len(writes) for name, writes in batches.items()} == dict.fromkeys(batches, 1)
    assert sum(writes[0] for writes in batches.values()) == OPENS


def _owner_and_other(cluster: Topology, group: ClusterGroup, key: str) -> list[RedisServer]:
    """The master serving ``key``'s slot, then another master."""
    router = cluster.router()
    try:
        port = int(router.get_node_from_key(key).port)
    finally:
        router.close()
    masters = group.masters()
    owner = next(master for master in masters if master.port == port)
    return [owner, next(master for master in masters if master is not owner)]


def test_a_session_whose_slot_is_migrating_is_read_through_ask_then_moved(
    cluster: Topology, cluster_group: ClusterGroup
) -> None:
    """A session's keys are migrated to another master mid-slot-move: its owner answers ASK and
    the hub reads it from the new node (ASKING first); once the slot is handed over, MOVED, and
    the hub follows it there too. Redis is never given up for memory."""
    hub = _hub(cluster)

    async def main() -> None:
        try:
            made, cookie = await hub.create("alice", data={"n": 1})
            key = hub.manager.core.redis_ops.keys.session(made.storage_id)
            slot = redis.cluster.key_slot(key.encode())
            source, target = _owner_and_other(cluster, cluster_group, key)
            source_id, target_id = cluster_node_id(source), cluster_node_id(target)
            src, dst = source.client(decode_responses=True), target.client(decode_responses=True)
            try:
                dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
                src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
                keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
                src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
                src.config_resetstat()
                during = await hub.open(cookie)
                assert during is not None
                assert during["n"] == 1
                assert errors_answered(source, "ASK") > 0
                assert hub.manager.core.last_error is None  # read from Redis, not memory
                for master in cluster_group.masters():
                    client = master.client()
                    try:
                        client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
                    finally:
                        client.close()
                after = await hub.open(cookie)
                assert after is not None
                assert after["n"] == 1
                assert hub.client is not None
                assert hub.client.get_node_from_key(key).port == target.port
                assert hub.manager.core.last_error is None
            finally:
                src.close()
                dst.close()
        finally:
            await hub.aclose()

    asyncio.run(main())
