"""A burst of concurrent calls beyond ``REDIS.MAX_CONNECTIONS`` on every topology, through both
hubs: a busy pool is not a dead Redis, so every call is served from Redis and the core never
degrades. Redis holds each burst for a moment (``CLIENT PAUSE`` on every master), so all of its
calls are in flight at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from helpers import LoopThread
from sessionhub.hub import AsyncSessionHub, SessionHub
from topology_fixtures import Topology

MAX_CONNECTIONS = 2
BURST = 4 * MAX_CONNECTIONS
PAUSE_MS = 300
"""Long enough for every call of a burst to be sent while Redis holds them, well within the
tests' 2 s socket timeout."""


class Burst:
    """A hub of either kind and a way to run calls on it all at once."""

    def __init__(self, kind: str, topology: Topology) -> None:
        self.topology = topology
        # No local read cache: every open must ask Redis.
        settings = topology.settings(
            redis={"MAX_CONNECTIONS": MAX_CONNECTIONS}, session={"LOCAL_CACHE_SIZE": 0}
        )
        self.loop: LoopThread | None = None
        self.hub: Any
        if kind == "sync":
            self.hub = SessionHub(settings)
        else:
            self.loop = LoopThread()
            self.hub = AsyncSessionHub(settings)
            self.loop.run(self.hub.start())

    def _pause_redis(self) -> None:
        for master in self.topology.masters():
            client = master.client()
            try:
                client.client_pause(PAUSE_MS)
            finally:
                client.close()

    def run(self, calls: list[Callable[[Any], Any]]) -> list[Any]:
        """Each call's result, all sent while Redis holds them."""
        self._pause_redis()
        if self.loop is None:
            with ThreadPoolExecutor(max_workers=len(calls)) as pool:
                futures = [pool.submit(call, self.hub) for call in calls]
                return [future.result() for future in futures]

        async def together() -> list[Any]:
            pending: list[Awaitable[Any]] = [call(self.hub) for call in calls]
            return list(await asyncio.gather(*pending))

        return self.loop.run(together())

    def close(self) -> None:
        if self.loop is None:
            self.hub.close()
            return
        self.loop.run(self.hub.aclose())
        self.loop.close()


@pytest.fixture(params=["sync", "async"])
def burst(request: pytest.FixtureRequest, topology: Topology) -> Iterator[Burst]:
    """A hub of each kind on each topology, with MAX_CONNECTIONS 2."""
    made = Burst(request.param, topology)
    try:
        yield made
    finally:
        made.close()


def _creator(user: str) -> Callable[[Any], Any]:
    return lambda hub: hub.create(user, data={"user": user})


def _opener(cookie: str) -> Callable[[Any], Any]:
    return lambda hub: hub.open(cookie)


def test_a_burst_beyond_max_connections_is_served_from_redis(
    burst: Burst, topology: Topology
) -> None:
    """4x MAX_CONNECTIONS concurrent creates, then as many opens, all land in Redis and are read
    back from it; the core never leaves Redis."""
    users = [f"burst-{i}" for i in range(BURST)]
    made = burst.run([_creator(user) for user in users])
    core = burst.hub.manager.core
    assert core.last_error is None
    keys = core.redis_ops.keys
    stored = {key.decode() for key in topology.keys(f"{keys.prefix}*:s:*")}
    assert stored == {keys.session(session.storage_id) for session, _ in made}

    opened = burst.run([_opener(cookie) for _, cookie in made])
    assert [session["user"] for session in opened] == users
    assert core.last_error is None
    assert core.mode == "redis"
