"""What the Pub/Sub subscribers (revocations, inbox wake-ups) share: their own connections, how
they notice a link that went silent, and how their background tasks are stopped."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Protocol, overload

import redis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelConnectionPool
from redis.sentinel import SentinelConnectionPool

from .stores.topology import AsyncClient, HeldSyncClient, LazyCluster

_SENTINEL_POOLS = (SentinelConnectionPool, AsyncSentinelConnectionPool)


class Feed(Protocol):
    """What a subscription does with its channel's messages (revocations, expiries)."""

    channel: str
    retry_s: float

    def handle(self, message: dict[str, Any] | None) -> bool:
        """Apply one message; ``True`` when it says the subscription is (re)established."""
        ...

    def lost(self, exc: Exception, *, redis_answers: bool) -> None:
        """The subscription failed (``redis_answers``: Redis answered a PING right after)."""
        ...


PING_AFTER = 1.0
"""Seconds of silence after which a subscriber pings Redis on its subscription."""
SILENT_LIMIT = 3.0
"""Seconds without a word from Redis, the ping's answer included, after which the subscription
counts as lost."""


class Liveness:
    """Whether a subscription still hears from Redis.

    A network that drops everything, with no reset and no close (a partition, a firewall or NAT
    that forgot the connection), leaves a blocking read waiting forever: the subscriber would
    go on believing it is linked while every message is lost. So a silent link is pinged, and
    one that stays silent past :data:`SILENT_LIMIT` is given up and made again.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heard = clock()
        self._pinged = False

    def heard(self) -> None:
        """Redis said something (a message, a subscription, a ping's answer)."""
        self._heard = self._clock()
        self._pinged = False

    def ping_due(self) -> bool:
        """Whether to ping now (once per silence); raises ``ConnectionError`` once the link has
        been silent too long."""
        silence = self._clock() - self._heard
        if silence > SILENT_LIMIT:
            raise redis.ConnectionError(
                f"no answer on the subscription for {silence:.1f} s, a ping included"
            )
        if silence > PING_AFTER and not self._pinged:
            self._pinged = True
            return True
        return False


@overload
def with_own_pool(client: HeldSyncClient) -> HeldSyncClient: ...


@overload
def with_own_pool(client: AsyncClient) -> AsyncClient: ...


def with_own_pool(client: HeldSyncClient | AsyncClient) -> HeldSyncClient | AsyncClient:
    """A client with ``client``'s settings on a pool of its own.

    A subscription must not share the hub's pool: the probe drops that pool's connections after
    an outage, which silently ended the subscription, and a blocking read must not hold one of
    the connections requests need. A cluster client is returned as it is: each of its Pub/Subs
    dials a node of its own, and the probe never drops its connections; it stays the hub's to
    close (closing it disconnects every connection of every node, the other subscriptions' too).
    """
    if isinstance(client, (LazyCluster, AsyncRedisCluster)):
        return client
    pool: Any = client.connection_pool
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k != "connection_pool"}
    kwargs["connection_class"] = pool.connection_class
    if isinstance(pool, _SENTINEL_POOLS):  # it asks the sentinels for the master itself
        kwargs.update(is_master=pool.is_master, check_connection=pool.check_connection)
        own = type(pool)(pool.service_name, pool.sentinel_manager, **kwargs)
    else:
        own = type(pool)(**kwargs)
    return type(client)(connection_pool=own)  # type: ignore[arg-type]


def read_slots_again(client: HeldSyncClient) -> None:
    """After a lost subscription, a cluster client reads which node serves which slot again.

    Its Pub/Sub dials the master its map names for the channel's slot; data calls refresh the map
    when they fail, a subscription does not, so after that master died the subscriber dialled
    it forever. Any other client (or a cluster's not built yet) has nothing to read.
    """
    cluster = client.built if isinstance(client, LazyCluster) else None
    if cluster is not None:
        with contextlib.suppress(Exception):  # no node answers yet: the next failure tries again
            cluster.nodes_manager.initialize()


async def aread_slots_again(client: AsyncClient) -> None:
    """:func:`read_slots_again` for an asyncio client."""
    if isinstance(client, AsyncRedisCluster):
        with contextlib.suppress(Exception):
            await client.nodes_manager.initialize()


async def cancel_subscriber(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` and wait until it has really ended.

    A cancellation that lands while redis-py is still setting up a subscription can be absorbed
    there (a service stopped right after it started hung on it), so it is repeated until the task
    is done.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
