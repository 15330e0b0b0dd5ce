"""Per-session locks for the requests that read, change and write back the same session data.

Concurrent requests of one session each read it, change it and save it: the last save wins
and the others' changes to the same key are lost, in SessionHub as in every session library.
The atomic helpers (``hub.increment``, ``hub.append``) cover counters and lists; for anything
else a request takes the session's lock, as Laravel's ``block`` does::

    with hub.lock(session, block=5) as current:   # async: async with
        current["cart"] = add_item(current["cart"], item)
        hub.save(current)

The lock is a Redis key in the session's slot (``SET NX PX`` with a random token, released by a
compare-and-delete script, so a lock that outlived its ``ttl`` is never released by its former
holder). Entering waits up to ``block`` seconds and raises :class:`LockTimeoutError` after that,
and yields the session as Redis holds it now (not the local cache's copy), or ``None`` if it is
gone. While Redis is down the lock only excludes the requests of this process.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Generic, TypeVar

from .exceptions import LockTimeoutError
from .frontends import AsyncRunner, SyncRunner, pauses
from .manager import SessionManager
from .session import Session
from .stores.base import Op
from .tokens import short

DEFAULT_BLOCK = 10.0
"""Seconds a request waits for a session's lock by default."""
DEFAULT_TTL = 30.0
"""Seconds a lock lives at most: a request that died holding it blocks others no longer."""

R = TypeVar("R", SyncRunner, AsyncRunner)


class _Lock(Generic[R]):
    """What both locks share: the lock's operations and the pauses between attempts (no I/O);
    each subclass only runs them, blocking or awaiting."""

    def __init__(
        self, run: R, manager: SessionManager, session: Session, block: float, ttl: float
    ) -> None:
        if block < 0 or ttl <= 0:
            raise ValueError("block must be >= 0 and ttl > 0 seconds")
        self._run: R = run
        self.manager = manager
        self.storage_id = session.storage_id
        self.block = block
        self.ttl_ms = max(1, int(ttl * 1000))
        self.token = secrets.token_hex(16)

    def _take(self) -> Op[bool]:
        return self.manager.try_lock(self.storage_id, self.token, self.ttl_ms)

    def _reload(self) -> Op[Session | None]:
        return self.manager.reload(self.storage_id)

    def _unlock(self) -> Op[None]:
        return self.manager.unlock(self.storage_id, self.token)

    def _pauses(self) -> Iterator[float]:
        """The pauses between attempts to take the lock (see :func:`.frontends.pauses`); instead
        of one that would end more than ``block`` seconds from now, :class:`LockTimeoutError`."""
        yield from pauses(self.block)
        raise LockTimeoutError(
            f"session {short(self.storage_id)} is locked by another request: not released within "
            f"block={self.block} s (raise block, or shorten the work done under the lock)"
        )


class SessionLock(_Lock[SyncRunner]):
    """The blocking hub's lock (see the module)."""

    def __enter__(self) -> Session | None:
        pauses = self._pauses()
        while not self._run(self._take()):
            time.sleep(next(pauses))
        try:
            return self._run(self._reload())
        except BaseException:
            self._run(self._unlock())
            raise

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._run(self._unlock())


class AsyncSessionLock(_Lock[AsyncRunner]):
    """The asyncio hub's lock (see the module)."""

    async def __aenter__(self) -> Session | None:
        pauses = self._pauses()
        # Polled: the lock is a Redis key, whose release nothing in this process can signal.
        while not await self._run(self._take()):  # noqa: ASYNC110
            await asyncio.sleep(next(pauses))
        try:
            return await self._run(self._reload())
        except BaseException:
            await self._run(self._unlock())
            raise

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._run(self._unlock())
