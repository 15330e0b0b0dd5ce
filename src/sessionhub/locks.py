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
from types import TracebackType

from .exceptions import LockTimeoutError
from .frontends import AsyncRunner, SyncRunner, pauses
from .manager import SessionManager
from .session import Session
from .tokens import short

DEFAULT_BLOCK = 10.0
"""Seconds a request waits for a session's lock by default."""
DEFAULT_TTL = 30.0
"""Seconds a lock lives at most: a request that died holding it blocks others no longer."""


class _Lock:
    def __init__(self, manager: SessionManager, session: Session, block: float, ttl: float) -> None:
        if block < 0 or ttl <= 0:
            raise ValueError("block must be >= 0 and ttl > 0 seconds")
        self.manager = manager
        self.sid = session.sid
        self.block = block
        self.ttl_ms = max(1, int(ttl * 1000))
        self.token = secrets.token_hex(16)

    def _timed_out(self) -> LockTimeoutError:
        return LockTimeoutError(
            f"session {short(self.sid)} is locked by another request: not released within "
            f"block={self.block} s (raise block, or shorten the work done under the lock)"
        )


class SessionLock(_Lock):
    """The blocking hub's lock (see the module)."""

    def __init__(
        self, run: SyncRunner, manager: SessionManager, session: Session, block: float, ttl: float
    ) -> None:
        super().__init__(manager, session, block, ttl)
        self._run = run

    def __enter__(self) -> Session | None:
        waits = pauses(self.block)
        while not self._run(self.manager.try_lock(self.sid, self.token, self.ttl_ms)):
            pause = next(waits, None)
            if pause is None:
                raise self._timed_out()
            time.sleep(pause)
        try:
            return self._run(self.manager.reload(self.sid))
        except BaseException:
            self._run(self.manager.unlock(self.sid, self.token))
            raise

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._run(self.manager.unlock(self.sid, self.token))


class AsyncSessionLock(_Lock):
    """The asyncio hub's lock (see the module)."""

    def __init__(
        self, run: AsyncRunner, manager: SessionManager, session: Session, block: float, ttl: float
    ) -> None:
        super().__init__(manager, session, block, ttl)
        self._run = run

    async def __aenter__(self) -> Session | None:
        waits = pauses(self.block)
        while not await self._run(self.manager.try_lock(self.sid, self.token, self.ttl_ms)):
            pause = next(waits, None)
            if pause is None:
                raise self._timed_out()
            await asyncio.sleep(pause)
        try:
            return await self._run(self.manager.reload(self.sid))
        except BaseException:
            await self._run(self.manager.unlock(self.sid, self.token))
            raise

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._run(self.manager.unlock(self.sid, self.token))
