"""The request session's tools for concurrent requests: ``increment``, ``append`` and ``lock``.

A request that reads a value, changes it and lets the end-of-request save write it back loses
the changes of the requests that overlapped it. The request sessions of the adapters offer the
hub's answers in each framework's idiom: blocking under Flask, awaited under ASGI, Quart and
Litestar (Django's store has its own, ``increment`` and ``aincrement``)::

    session.increment("visits")            # await session.increment("visits") on asyncio
    session.append("seen", item)

    with session.lock(block=5):            # async with session.lock(block=5):
        session["cart"] = add(session.get("cart", []), item)

The helpers change the value in the store at once and take the new value as what the store
holds, so the end-of-request save does not write it again. Under the lock the session's data is
read again from Redis (changes this request made before taking it are replaced), and what the
block changes is saved before the lock is released. A session no store holds yet (nothing was
saved, no cookie) is this request's alone: the helpers change it and the lock takes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Generic, TypeVar

from ..hub import AsyncSessionHub, SessionHub
from ..locks import DEFAULT_BLOCK, DEFAULT_TTL
from ..manager import SessionManager
from ..session import Session
from ..stores.base import Op
from .base import RequestSession

NO_HUB = "this request session has no SessionHub hub: it was not made by a SessionHub adapter"


H = TypeVar("H", SessionHub, AsyncSessionHub)


class _Concurrent(RequestSession, Generic[H]):
    """What both kinds share: no I/O."""

    hub: H | None = None
    """Set by the adapter that made the session (or found by an override of :meth:`_hub`)."""

    def _hub(self) -> H:
        if self.hub is None:
            raise RuntimeError(NO_HUB)
        return self.hub

    def _locked(self, current: Session | None) -> None:
        """Continue on ``current``, the session as Redis holds it under the lock (``None``:
        gone meanwhile, and the request keeps what it has)."""
        if current is None:
            return
        current.reissued_cookie = self._inner.reissued_cookie
        self._inner = current
        self._pending = False
        current.adopt(self)

    def _save_locked(self, manager: SessionManager) -> Op[None]:
        """Save what the block changed while the lock is still held."""
        if self.stored and not (self._logout or self._inner.invalidated):
            yield from manager.save(self._inner)


class BlockingRequestSession(_Concurrent[SessionHub]):
    """A request session served by a blocking hub (Flask)."""

    def increment(self, key: str, by: int | float = 1) -> int | float | None:
        """Add ``by`` to the number under ``key`` (0 when absent) in the store at once; the new
        value, or ``None`` if the session was destroyed meanwhile (see :mod:`.atomic`)."""
        self.accessed = True
        return self._hub().increment(self._inner, key, by)

    def append(self, key: str, value: object) -> list[object] | None:
        """Append ``value`` to the list under ``key`` in the store at once; the new list, or
        ``None`` if the session was destroyed meanwhile."""
        self.accessed = True
        return self._hub().append(self._inner, key, value)

    @contextlib.contextmanager
    def lock(
        self, *, block: float = DEFAULT_BLOCK, ttl: float = DEFAULT_TTL
    ) -> Iterator[BlockingRequestSession]:
        """Hold the session's lock for the block: waits up to ``block`` seconds for it
        (``LockTimeoutError`` after that), reads the data again, saves the block's changes."""
        hub = self._hub()
        if not self.stored:
            yield self
            return
        with hub.lock(self._inner, block=block, ttl=ttl) as current:
            self._locked(current)
            yield self
            hub.run(self._save_locked(hub.manager))


class AsyncRequestSession(_Concurrent[AsyncSessionHub]):
    """A request session served by an asyncio hub (ASGI, Quart, Litestar)."""

    async def increment(self, key: str, by: int | float = 1) -> int | float | None:
        """:meth:`BlockingRequestSession.increment`, awaited."""
        self.accessed = True
        return await self._hub().increment(self._inner, key, by)

    async def append(self, key: str, value: object) -> list[object] | None:
        """:meth:`BlockingRequestSession.append`, awaited."""
        self.accessed = True
        return await self._hub().append(self._inner, key, value)

    @contextlib.asynccontextmanager
    async def lock(
        self, *, block: float = DEFAULT_BLOCK, ttl: float = DEFAULT_TTL
    ) -> AsyncIterator[AsyncRequestSession]:
        """:meth:`BlockingRequestSession.lock`, with ``async with``."""
        hub = self._hub()
        if not self.stored:
            yield self
            return
        async with hub.lock(self._inner, block=block, ttl=ttl) as current:
            self._locked(current)
            yield self
            await hub.run(self._save_locked(hub.manager))
