"""A burst of calls beyond ``REDIS.MAX_CONNECTIONS`` waits for a connection instead of failing.

redis-py's pools raise ``MaxConnectionsError`` (a ``ConnectionError``) the moment every
connection is in use, which the resilient core would take for Redis being down. A busy pool is
not a dead Redis: a call waits for a connection to come free, up to ``REDIS.SOCKET_TIMEOUT``,
as redis-py's ``BlockingConnectionPool`` would. Only if none comes free in that time does it
fail, with :func:`no_connection_free`: every call ahead of it then took longer than the socket
timeout, which the core treats as it treats Redis timing out.

The blocking hub's held connections wait for one of their own to come back
(:class:`~.drivers.HeldConnections`). The cluster client's pools are per node and its own, so
the blocking cluster path bounds its calls in flight instead (:class:`CallSlots`): a call holds
at most one connection of each node at a time, so no node is asked for more than the bound.
The asyncio hub needs one connection per server (per master on Cluster) whatever the burst.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import redis

CLUSTER_RESERVE = 4
"""Connections of each cluster node beyond ``REDIS.MAX_CONNECTIONS``: the revocation, expiry and
inbox subscriptions and a slot-map refresh borrow them from the node's pool, outside the calls."""


def no_connection_free(limit: int, timeout: float | None) -> redis.TimeoutError:
    """The error of a call that waited ``timeout`` seconds and saw no connection come free."""
    return redis.TimeoutError(
        f"no Redis connection came free within REDIS.SOCKET_TIMEOUT ({timeout} s): all "
        f"REDIS.MAX_CONNECTIONS ({limit}) were busy; raise MAX_CONNECTIONS if Redis is fast "
        "and this is load"
    )


class CallSlots:
    """At most ``limit`` calls in flight; more wait up to ``timeout`` seconds for a slot."""

    def __init__(self, limit: int, timeout: float | None) -> None:
        self.limit = limit
        self.timeout = timeout
        self._sync = threading.BoundedSemaphore(limit)
        self._async: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """A slot for one blocking call."""
        if not self._sync.acquire(timeout=self.timeout):
            raise no_connection_free(self.limit, self.timeout)
        try:
            yield
        finally:
            self._sync.release()

    @asynccontextmanager
    async def held_async(self) -> AsyncIterator[None]:
        """A slot for one call on the running event loop."""
        semaphore = self._semaphore()
        if not semaphore.locked():
            await semaphore.acquire()  # free: no wait, and no task for wait_for to make
        else:
            try:
                await asyncio.wait_for(semaphore.acquire(), self.timeout)
            except asyncio.TimeoutError:
                raise no_connection_free(self.limit, self.timeout) from None
        try:
            yield
        finally:
            semaphore.release()

    def _semaphore(self) -> asyncio.Semaphore:
        # A semaphore belongs to the loop that first waits on it; a client used on another loop
        # (tests, a restarted service) gets a fresh one.
        loop = asyncio.get_running_loop()
        if self._async is None or loop is not self._loop:
            self._async, self._loop = asyncio.Semaphore(self.limit), loop
        return self._async
