"""The one store applications talk to: Redis while it answers, memory while it does not.

* Healthy: every operation goes to Redis; the memory store keeps a mirror of the sessions this
  process has seen, so that an outage logs nobody out.
* The first connection error or timeout opens the circuit: that call and every later one is
  served from memory at once, and the front end starts a background probe.
* While degraded, memory records what changed: sessions created or touched (``dirty``) and
  sessions destroyed (``tombstones``).
* When the probe reaches Redis again, tombstones are deleted from Redis first (a logout during
  the outage must not come back), dirty sessions are copied into Redis when
  ``migrate_on_recovery`` is on, and only then does traffic return to Redis.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

from ..exceptions import RedisTooOldError
from ..session import F_EXPIRES, Fields
from ..tokens import short
from .base import CommandCall, Op, ScriptCall
from .memory import MemoryStore
from .redis import REDIS_DOWN, RedisOps

log = logging.getLogger("sessionhub.store")

T = TypeVar("T")


class Fallback(enum.Enum):
    """What :meth:`ResilientCore.on_redis` answers instead of a result."""

    MEMORY = "use memory"


USE_MEMORY: Final = Fallback.MEMORY
"""Redis cannot serve this call now: the caller answers from memory."""

DEGRADED_MESSAGE = "Redis unavailable, sessions stored in memory (degraded mode)"
RECOVERED_MESSAGE = "Redis connection restored, sessions stored in Redis"
RECOVERY_BATCH = 500
"""Sessions copied into Redis per round trip on recovery."""


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Lifetimes:
    """Idle timeout, absolute lifetime and refresh threshold, in milliseconds."""

    idle_ms: int = 7_200_000
    absolute_ms: int = 604_800_000
    refresh_threshold_ms: int = 0


class ResilientCore:
    """Routes each operation to Redis or memory and reconciles the two after an outage."""

    def __init__(
        self,
        redis_ops: RedisOps | None,
        memory: MemoryStore,
        *,
        lifetimes: Lifetimes,
        migrate_on_recovery: bool = True,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.redis_ops = redis_ops
        self.memory = memory
        self.lifetimes = lifetimes
        self.migrate_on_recovery = migrate_on_recovery
        self.clock = clock
        self.degraded = False
        self.degraded_since: float | None = None
        self.last_error: str | None = None
        self.on_degraded: Callable[[], None] | None = None
        """Called once each time the circuit opens; the front end starts its probe loop here."""
        self._lock = threading.Lock()
        self._dirty: dict[str, int] = {}  # sid -> change counter, to spot writes during recovery
        self._outage_born: set[str] = set()  # created while degraded, not (yet) in Redis
        self._tombstones: set[str] = set()
        self._recovering = False  # Redis answered; copying what memory changed before switching
        self.recovery_hooks: list[Callable[[], Op[bool]]] = []
        """Run by :meth:`recover` before traffic returns to Redis: each flushes what its feature
        kept in memory during the outage and returns ``True`` once nothing is left to flush."""

    # -- state ---------------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        """``redis``, ``degraded`` or ``memory`` (memory-only configuration)."""
        if self.redis_ops is None:
            return "memory"
        return "degraded" if self.degraded else "redis"

    def _use_redis(self) -> bool:
        return self.redis_ops is not None and not self.degraded

    @property
    def has_redis(self) -> bool:
        """Whether Redis is configured at all (``False`` for ``SESSION.TYPE = memory``)."""
        return self.redis_ops is not None

    def trip(self, exc: BaseException) -> None:
        """Open the circuit: from now on, serve from memory until the probe succeeds."""
        with self._lock:
            self.last_error = f"{type(exc).__name__}: {exc}"
            if self.degraded:
                return
            self.degraded = True
            self.degraded_since = time.time()
        log.warning("%s: %s", DEGRADED_MESSAGE, self.last_error)
        if self.on_degraded is not None:
            self.on_degraded()

    @property
    def redis_up(self) -> bool:
        """Whether operations go to Redis now (configured for Redis and the circuit is closed)."""
        return self._use_redis()

    def _mark_dirty(self, sid: str) -> None:
        if self.redis_ops is not None:
            with self._lock:
                self._dirty[sid] = self._dirty.get(sid, 0) + 1

    # -- the one "Redis, else memory" path ------------------------------------------------------

    def on_redis(self, op: Op[T]) -> Op[T | Literal[Fallback.MEMORY]]:
        """``op``'s result from Redis, or :data:`USE_MEMORY` when the caller must use memory.

        That is while the circuit is open (or no Redis is configured), and when ``op`` fails
        because Redis cannot serve it, which opens the circuit. Every feature reaches Redis
        through here, so what counts as "Redis cannot serve" is decided in one place.
        """
        if not self._use_redis():
            return USE_MEMORY
        try:
            return (yield from op)
        except REDIS_DOWN as exc:
            self.trip(exc)
            return USE_MEMORY

    # -- operations ----------------------------------------------------------------------------

    def load(self, sid: str, *, touch: bool = True, force: bool = False) -> Op[Fields | None]:
        """The live session ``sid``, or ``None``.

        ``touch`` slides the idle expiry, unless the session was refreshed within the refresh
        threshold; ``force`` slides it regardless (an explicit extend).
        """
        lt, now = self.lifetimes, self.clock()
        threshold = 0 if force else lt.refresh_threshold_ms
        if self.redis_ops is not None:
            fields = yield from self.on_redis(
                self.redis_ops.load(sid, now, lt.idle_ms, touch=touch, threshold_ms=threshold)
            )
            if fields is not USE_MEMORY:
                if fields is not None:
                    self.memory.put(sid, fields, int(fields[F_EXPIRES]))
                    return fields
                if sid not in self._outage_born:
                    self.memory.destroy(sid)  # a stale mirror copy must not outlive Redis's answer
                    return None
        if sid in self._tombstones:
            return None
        fields = self.memory.load(sid, now, lt.idle_ms, touch=touch, threshold_ms=threshold)
        if fields is not None and touch and self.degraded and not self._recovering:
            # While recovering, a slide alone does not make a session dirty again: a session
            # read nonstop would otherwise never be clean and traffic never return to Redis.
            # Redis keeps the expiry of its copy, at most the recovery's few round trips older.
            self._mark_dirty(sid)
        return fields

    def create(
        self,
        sid: str,
        fields: Fields,
        expires_ms: int,
        also: tuple[ScriptCall | CommandCall, ...] = (),
    ) -> Op[bool]:
        """Store a new session; ``True`` when it went to Redis, with ``also`` in the same round
        trip (``False``: memory, and ``also`` was not sent)."""
        self.memory.put(sid, fields, expires_ms)
        if self.redis_ops is None:
            return False
        sent = yield from self.on_redis(self.redis_ops.create(sid, fields, expires_ms, also))
        if sent is not USE_MEMORY:
            return True
        with self._lock:
            self._outage_born.add(sid)
        self._mark_dirty(sid)
        return False

    def update(
        self,
        sid: str,
        set_fields: Fields,
        delete: tuple[str, ...],
        expires_ms: int | None = None,
    ) -> Op[bool]:
        """Write changed data fields, and a new expiry if given (set as is, not slid);
        ``False`` when the session no longer exists."""
        now = self.clock()
        if self.redis_ops is not None:
            ok = yield from self.on_redis(
                self.redis_ops.update(sid, set_fields, delete, expires_ms)
            )
            if ok is True:
                self.memory.update(sid, set_fields, delete, now, expires_ms)
                return True
            if ok is False and sid not in self._outage_born:
                return False
        if sid in self._tombstones:
            return False
        ok = self.memory.update(sid, set_fields, delete, now, expires_ms)
        if ok and self.degraded:
            self._mark_dirty(sid)
        return ok

    def destroy(self, sid: str) -> Op[bool]:
        """Delete a session everywhere; ``True`` when one existed."""
        in_memory = self.memory.destroy(sid)
        with self._lock:
            self._outage_born.discard(sid)
            self._dirty.pop(sid, None)
        if self.redis_ops is None:
            return in_memory
        in_redis = yield from self.on_redis(self.redis_ops.destroy(sid))
        if in_redis is not USE_MEMORY:
            return in_redis or in_memory
        with self._lock:
            self._tombstones.add(sid)
        return in_memory

    def count(self) -> Op[tuple[int | None, int]]:
        """``(sessions in Redis or None when unknown, sessions only in memory)``."""
        now = self.clock()
        if self.redis_ops is not None:
            in_redis = yield from self.on_redis(self.redis_ops.count(now))
            if in_redis is not USE_MEMORY:
                only_here = sum(1 for s in list(self._outage_born) if self.memory.peek(s, now))
                return in_redis, only_here
        return None, self.memory.count(now)

    def ping(self) -> Op[float | None]:
        """Round-trip latency to Redis in milliseconds, or ``None`` when degraded or memory-only.

        While degraded this does not touch Redis: the probe loop owns reconnection.
        """
        if self.redis_ops is None:
            return None
        start = time.perf_counter()
        answered = yield from self.on_redis(self.redis_ops.ping())
        return None if answered is USE_MEMORY else (time.perf_counter() - start) * 1000

    def verify(self) -> Op[bool]:
        """Check, at start, that Redis answers and is new enough; opens the circuit if not.

        An unusable Redis is treated like an unreachable one: sessions are served from memory,
        the reason is in ``last_error`` (health) and the log, and the probe keeps checking.
        """
        if self.redis_ops is None:
            return True
        try:
            checked = yield from self.on_redis(self.redis_ops.check_server())
        except RedisTooOldError as exc:
            self._report_too_old(exc)
            self.trip(exc)
            return False
        return checked is not USE_MEMORY

    def _report_too_old(self, exc: RedisTooOldError) -> None:
        error = f"{type(exc).__name__}: {exc}"
        if error != self.last_error:  # once per outage, not once per probe
            log.error("%s", exc)
        self.last_error = error

    # -- recovery ------------------------------------------------------------------------------

    def recover(self) -> Op[bool]:
        """Try Redis; if it answers, reconcile and close the circuit. ``True`` once healthy."""
        if self.redis_ops is None or not self.degraded:
            return True
        try:
            yield from self.redis_ops.check_server()
            self._recovering = True
            while True:
                with self._lock:
                    tombstones = list(self._tombstones)
                yield from self.redis_ops.destroy_many(tombstones)
                with self._lock:
                    self._tombstones.difference_update(tombstones)
                yield from self._copy_dirty()
                flushed = True
                for hook in list(self.recovery_hooks):
                    flushed = (yield from hook()) and flushed
                with self._lock:
                    if flushed and not self._tombstones and not self._dirty:
                        self.degraded = False
                        break
        except RedisTooOldError as exc:
            self._report_too_old(exc)
            return False
        except REDIS_DOWN as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        finally:
            self._recovering = False
        outage = time.time() - (self.degraded_since or time.time())
        log.warning("%s (after %.1f s in degraded mode)", RECOVERED_MESSAGE, outage)
        return True

    def _copy_dirty(self) -> Op[None]:
        now = self.clock()
        with self._lock:
            batch = dict(list(self._dirty.items())[:RECOVERY_BATCH])
        if self.migrate_on_recovery:
            assert self.redis_ops is not None
            records = []
            for sid in batch:
                fields = self.memory.peek(sid, now)
                if fields is not None:
                    records.append((sid, fields, int(fields[F_EXPIRES])))
            yield from self.redis_ops.put_many_if_newer(records)
            for sid, _, _ in records:
                log.info("Session copied from memory to Redis: %s", short(sid))
        with self._lock:
            for sid, version in batch.items():
                if self._dirty.get(sid) == version:  # untouched while we copied it
                    del self._dirty[sid]
                    if self.migrate_on_recovery:
                        self._outage_born.discard(sid)

    def sweep(self) -> int:
        """Drop expired sessions from memory and forget outage bookkeeping for them."""
        now = self.clock()
        removed = self.memory.sweep(now)
        with self._lock:
            self._outage_born = {s for s in self._outage_born if self.memory.peek(s, now)}
        return removed
