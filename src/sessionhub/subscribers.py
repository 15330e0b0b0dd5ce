"""What the Pub/Sub subscribers (revocations, inbox wake-ups) share: their own connections, and
how their background tasks are stopped."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol, TypeVar

import redis
import redis.asyncio as aioredis

C = TypeVar("C", redis.Redis, aioredis.Redis)


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


def with_own_pool(client: C) -> C:
    """A client with ``client``'s settings on a pool of its own.

    A subscription must not share the hub's pool: the probe drops that pool's connections after
    an outage, which silently ended the subscription, and a blocking read must not hold one of
    the connections requests need.
    """
    pool = client.connection_pool
    own = type(pool)(connection_class=pool.connection_class, **pool.connection_kwargs)
    return type(client)(connection_pool=own)


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
