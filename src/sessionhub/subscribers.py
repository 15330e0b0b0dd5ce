"""What the Pub/Sub subscribers (revocations, inbox wake-ups) share: their own connections, and
how their background tasks are stopped."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol, overload

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelConnectionPool
from redis.cluster import RedisCluster
from redis.sentinel import SentinelConnectionPool

from .stores.topology import AsyncClient, SyncClient

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


@overload
def with_own_pool(client: SyncClient) -> SyncClient: ...


@overload
def with_own_pool(client: AsyncClient) -> AsyncClient: ...


def with_own_pool(client: SyncClient | AsyncClient) -> SyncClient | AsyncClient:
    """A client with ``client``'s settings on a pool of its own.

    A subscription must not share the hub's pool: the probe drops that pool's connections after
    an outage, which silently ended the subscription, and a blocking read must not hold one of
    the connections requests need. A cluster client is returned as it is: each of its Pub/Subs
    dials a node of its own, and the probe never drops its connections.
    """
    if isinstance(client, (RedisCluster, AsyncRedisCluster)):
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
