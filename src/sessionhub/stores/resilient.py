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
* The mirror is kept coherent by the revocation channel (see :mod:`.coherence`): a session
  destroyed in Redis by any process is dropped here, and a copy the subscription did not cover
  is never served from memory.
* The mirror is also the read cache while Redis is healthy: a read that need not slide the idle
  expiry (it was slid within ``refresh_threshold_ms``) is answered from a copy the current
  subscription vouches for, with no round trip. Data writes by other processes arrive on the
  same channel and drop the copy; this process's own writes update it.
"""

from __future__ import annotations

import enum
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, Protocol, TypeVar

from ..events import DEFAULT_QUEUE_SIZE, EventBus
from ..exceptions import RedisConfigError, RedisTooOldError
from ..session import F_EXPIRES, F_USER, Fields
from ..tokens import short
from .base import CallObserver, CommandCall, FieldChange, Op, ScriptCall
from .coherence import UNCONFIRMED, MirrorCoherence, Stamp
from .memory import MemoryStore
from .redis import TOO_OLD, UNCLASSIFIED, Fault, RedisOps, classify, fault_text, refusal

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


class CoreObserver(CallObserver, Protocol):
    """Watches a core from outside it (metrics, tracing): the core itself counts nothing. Its
    ``redis_call`` hears of the Redis calls of the operations a front end runs (every call
    through :meth:`ResilientCore.on_redis`, not the probe's during an outage): the drivers
    time them, which costs a request less than wrapping each operation here."""

    def mode_changed(self, degraded: bool) -> None:
        """The circuit opened (``True``) or closed after a recovery (``False``)."""


@dataclass(frozen=True)
class Lifetimes:
    """Idle timeout, absolute lifetime and refresh threshold, in milliseconds; and the idle
    timeout and absolute lifetime of a session made with "remember me"."""

    idle_ms: int = 7_200_000
    absolute_ms: int = 604_800_000
    refresh_threshold_ms: int = 0
    remember_idle_ms: int = 1_209_600_000
    remember_absolute_ms: int = 2_592_000_000


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
        event_queue: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        self.redis_ops = redis_ops
        self.memory = memory
        self.lifetimes = lifetimes
        self.migrate_on_recovery = migrate_on_recovery
        self.clock = clock
        self.degraded = False
        self.degraded_since: float | None = None
        self.last_error: str | None = None
        self.fault: Fault | None = None
        """What keeps traffic off Redis while degraded (``None`` while healthy)."""
        self.on_degraded: Callable[[], None] | None = None
        """Called once each time the circuit opens; the front end starts its probe loop here."""
        self.observer: CoreObserver | None = None
        """Told of every mode change, and by the front end of each Redis call of its operations;
        ``None`` (the default) costs nothing."""
        self._lock = threading.Lock()
        self._dirty: dict[
            str, int
        ] = {}  # storage_id -> change counter, to spot writes during recovery
        self._outage_born: set[str] = set()  # created while degraded, not (yet) in Redis
        self._tombstones: set[str] = set()
        self._recovering = False  # Redis answered; copying what memory changed before switching
        self.recovery_hooks: list[Callable[[], Op[bool]]] = []
        """Run by :meth:`recover` before traffic returns to Redis: each flushes what its feature
        kept in memory during the outage and returns ``True`` once nothing is left to flush."""
        self.coherence = MirrorCoherence()
        self.events = EventBus(max_queued=event_queue, clock=lambda: self.clock())
        """Session events: emitted here (degraded, recovered, expiries memory finds) and by the
        manager and the user index on top of this core."""
        self.writer = secrets.token_hex(8)
        """Names this core's data writes on the channel, so it keeps its own updated copy."""
        self.cache_hits = 0
        self.cache_misses = 0
        """Reads the cache answered, and reads it could have answered but did not hold."""
        # Taken around "decide whether a reply may be kept" + "keep it", and around "invalidate"
        # + "drop or update the copy", so that no reply read before a change is kept after it.
        self._mirror_lock = threading.Lock()
        # storage_id -> [own writes in flight, whether two overlapped]: an overlapping write's reply
        # may be handled before an earlier one's, so neither applies its change to the copy.
        self._writing: dict[str, list[int]] = {}
        self._local_locks: dict[str, tuple[str, int]] = {}  # storage_id -> (token, until ms)
        self.restore_hooks: list[Callable[[str, Fields], None]] = []
        """Called by :meth:`recover` for each session it wrote back (Redis had lost it, or held an
        older copy), before the recovery hooks run: each queues what its feature keeps about the
        session (the user's index, presence), so whatever is served is listed again."""

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

    def trip(self, exc: BaseException, fault: Fault) -> None:
        """Open the circuit: from now on, serve from memory until the probe succeeds."""
        with self._lock:
            was_degraded, changed = self.degraded, fault != self.fault
            self._note(exc, fault)
            self.degraded = True
            if not was_degraded:
                self.degraded_since = time.time()
        # A configuration mistake will not pass by itself: it is an error, not a warning.
        level = logging.ERROR if fault.config else logging.WARNING
        if not was_degraded:
            log.log(level, "%s: %s", DEGRADED_MESSAGE, self.last_error)
            self.events.emit("degraded", reason=fault.name)
            if self.on_degraded is not None:
                self.on_degraded()
            if self.observer is not None:
                self.observer.mode_changed(True)
        elif changed:
            log.log(level, "Redis fault changed, still in degraded mode: %s", self.last_error)

    def _note(self, exc: BaseException, fault: Fault) -> None:
        self.fault = fault
        self.last_error = fault_text(fault, exc)

    def config_error(self) -> RedisConfigError | None:
        """The configuration mistake keeping traffic off Redis (wrong password, ACL, TLS,
        master name), or ``None`` when there is none."""
        fault = self.fault
        if not (self.degraded and fault is not None and fault.config):
            return None
        return refusal(self.last_error or fault.message)

    @property
    def reads_from_redis(self) -> bool:
        """Whether Redis still serves reads while degraded (it refuses only writes): the probe
        then keeps the connections that reads use."""
        fault = self.fault
        return self.degraded and fault is not None and fault.reads_work

    @property
    def redis_up(self) -> bool:
        """Whether operations go to Redis now (configured for Redis and the circuit is closed)."""
        return self._use_redis()

    def _mark_dirty(self, storage_id: str) -> None:
        if self.redis_ops is not None:
            with self._lock:
                self._dirty[storage_id] = self._dirty.get(storage_id, 0) + 1

    # -- the one "Redis, else memory" path ------------------------------------------------------

    def on_redis(self, op: Op[T], *, reads: bool = False) -> Op[T | Literal[Fallback.MEMORY]]:
        """``op``'s result from Redis, or :data:`USE_MEMORY` when the caller must use memory.

        That is while the circuit is open (or no Redis is configured), and when ``op`` fails
        because Redis cannot serve it (:func:`~.redis.classify`), which opens the circuit. Every
        feature reaches Redis through here, so what counts as "Redis cannot serve" is decided in
        one place. An op that only ``reads`` still goes to Redis while the fault is one that
        refuses writes only (read-only replica, out of memory).
        """
        if not (self._use_redis() or (reads and self.reads_from_redis)):
            return USE_MEMORY
        try:
            return (yield from op)
        except Exception as exc:
            fault = classify(exc)
            if fault is None:
                raise
            self.trip(exc, fault)
            return USE_MEMORY

    # -- operations ----------------------------------------------------------------------------

    def load(
        self, storage_id: str, *, touch: bool = True, force: bool = False, cached: bool = True
    ) -> Op[Fields | None]:
        """The live session ``storage_id``, or ``None``; the caller must not change the fields.

        ``touch`` slides the idle expiry, unless the session was refreshed within the refresh
        threshold; ``force`` slides it regardless (an explicit extend). A read that need not
        slide is answered from the cache when it holds a vouched-for copy; ``cached=False``
        asks Redis regardless (a read under the session's lock).
        """
        lt, now = self.lifetimes, self.clock()
        threshold = 0 if force else lt.refresh_threshold_ms
        if cached and self.memory.cache_size and self._use_redis() and (threshold or not touch):
            hit = self.memory.cached(
                storage_id, now, self.coherence.link, threshold if touch else None
            )
            if hit is not None:
                self.cache_hits += 1
                return hit
            self.cache_misses += 1
        if self.redis_ops is not None:
            was_up = self._use_redis()
            stamp = self.coherence.stamp()
            fields = yield from self._load_redis(storage_id, now, touch, threshold)
            if fields is USE_MEMORY and was_up and self.reads_from_redis:
                # The slide found Redis refusing writes: it still serves the read.
                fields = yield from self._load_redis(storage_id, now, touch, threshold)
            if fields is not USE_MEMORY:
                if fields is not None:
                    self._keep(storage_id, fields, stamp)
                    if self._use_redis():
                        return fields
                elif storage_id not in self._outage_born:
                    self.memory.destroy(
                        storage_id
                    )  # a stale mirror copy must not outlive Redis's answer
                    return None
        if storage_id in self._tombstones or not self._servable(storage_id):
            return None
        fields = self.memory.load(storage_id, now, lt.idle_ms, touch=touch, threshold_ms=threshold)
        if fields is not None and touch and self.degraded and not self._recovering:
            # While recovering, a slide alone does not make a session dirty again: a session
            # read nonstop would otherwise never be clean and traffic never return to Redis.
            # Redis keeps the expiry of its copy, at most the recovery's few round trips older.
            self._mark_dirty(storage_id)
        return fields

    def _keep(self, storage_id: str, fields: Fields, stamp: Stamp) -> None:
        """Mirror what Redis returned for a call stamped ``stamp``, unless it changed since."""
        with self._mirror_lock:
            confirmed = self.coherence.confirmation(stamp, storage_id)
            if confirmed is None:  # destroyed or changed right after this read: do not keep it
                self.memory.destroy(storage_id)
                return
            link = UNCONFIRMED if confirmed == UNCONFIRMED else stamp.link
            self.memory.put(storage_id, fields, int(fields[F_EXPIRES]), confirmed, link)

    def _load_redis(
        self, storage_id: str, now: int, touch: bool, threshold: int
    ) -> Op[Fields | Literal[Fallback.MEMORY] | None]:
        """Redis's answer for ``storage_id``, or :data:`USE_MEMORY`.

        While Redis refuses only writes it is still read, without sliding, until this process
        changes the session (memory slides it): from then on memory's copy is the newer one.
        """
        assert self.redis_ops is not None
        reading = not self._use_redis()
        if reading and (
            storage_id in self._dirty
            or storage_id in self._outage_born
            or storage_id in self._tombstones
        ):
            return USE_MEMORY
        load = self.redis_ops.load(
            storage_id,
            now,
            self.lifetimes.idle_ms,
            touch=touch and not reading,
            threshold_ms=threshold,
        )
        return (yield from self.on_redis(load, reads=reading))

    def create(
        self,
        storage_id: str,
        fields: Fields,
        expires_ms: int,
        also: tuple[ScriptCall | CommandCall, ...] = (),
    ) -> Op[bool]:
        """Store a new session; ``True`` when it went to Redis, with ``also`` in the same round
        trip (``False``: memory, and ``also`` was not sent)."""
        stamp = self.coherence.stamp()
        self.memory.put(storage_id, fields, expires_ms, stamp.epoch, stamp.link)
        if self.redis_ops is None:
            return False
        sent = yield from self.on_redis(self.redis_ops.create(storage_id, fields, expires_ms, also))
        if sent is not USE_MEMORY:
            return True
        with self._lock:
            self._outage_born.add(storage_id)
        self._mark_dirty(storage_id)
        return False

    def update(
        self,
        storage_id: str,
        set_fields: Fields,
        delete: tuple[str, ...],
        expires_ms: int | None = None,
    ) -> Op[bool]:
        """Write changed data fields, and a new expiry if given (set as is, not slid);
        ``False`` when the session no longer exists."""
        now = self.clock()
        if self.redis_ops is not None:
            write = self.redis_ops.update(storage_id, set_fields, delete, expires_ms, self.writer)
            ok = yield from self._own_write(
                storage_id,
                write,
                lambda done: (
                    done and self.memory.update(storage_id, set_fields, delete, now, expires_ms)
                ),
            )
            if ok is True:
                return True
            if ok is False and storage_id not in self._outage_born:
                return False
        if storage_id in self._tombstones or not self._servable(storage_id):
            return False
        ok = self.memory.update(storage_id, set_fields, delete, now, expires_ms)
        if ok and self.degraded:
            self._mark_dirty(storage_id)
        return ok

    def modify(self, storage_id: str, name: str, change: FieldChange) -> Op[str | None]:
        """Change one field atomically (see :meth:`.RedisOps.modify`; memory applies
        ``change.apply`` under its lock); its new stored value, or ``None`` when the session
        is gone."""
        now = self.clock()
        if self.redis_ops is not None:
            write = self.redis_ops.modify(storage_id, name, change, self.writer)
            value = yield from self._own_write(
                storage_id,
                write,
                lambda new: (
                    new is not None and self.memory.update(storage_id, {name: new}, (), now)
                ),
            )
            if value is not USE_MEMORY and (
                value is not None or storage_id not in self._outage_born
            ):
                return value
        if storage_id in self._tombstones or not self._servable(storage_id):
            return None
        value = self.memory.modify(storage_id, name, change.apply, now)
        if value is not None and self.degraded:
            self._mark_dirty(storage_id)
        return value

    def _own_write(
        self, storage_id: str, op: Op[T], apply: Callable[[T], object]
    ) -> Op[T | Literal[Fallback.MEMORY]]:
        """``op`` on Redis; then this process's copy gets the change (``apply``), or is dropped
        when another write of this process overlapped it (their replies may come in any order).

        Other processes drop their copies on the write's message; this one ignores its own.
        """
        with self._lock:
            flight = self._writing.get(storage_id)
            if flight is None:
                self._writing[storage_id] = [1, 0]
            else:
                flight[0] += 1
                flight[1] = 1
        try:
            result = yield from self.on_redis(op)
        finally:
            with self._lock:
                flight = self._writing[storage_id]
                flight[0] -= 1
                alone = not flight[1]
                if not flight[0]:
                    del self._writing[storage_id]
        if result is not USE_MEMORY:
            with self._mirror_lock:
                self.coherence.revoked(storage_id)  # a load read before the write must not be kept
                if not (alone and apply(result)):
                    self.memory.destroy(storage_id)
        return result

    def lock(self, storage_id: str, token: str, ttl_ms: int) -> Op[bool]:
        """Take the session's lock for ``token`` unless someone else holds it."""
        if self.redis_ops is not None:
            taken = yield from self.on_redis(self.redis_ops.lock(storage_id, token, ttl_ms))
            if taken is not USE_MEMORY:
                return taken
        # While degraded, requests of this process are all there is to exclude.
        now = self.clock()
        with self._lock:
            held = self._local_locks.get(storage_id)
            if held is not None and held[1] > now:
                return False
            self._local_locks[storage_id] = (token, now + ttl_ms)
            return True

    def unlock(self, storage_id: str, token: str) -> Op[None]:
        """Release the lock ``token`` took, if it still holds it."""
        with self._lock:
            if self._local_locks.get(storage_id, ("",))[0] == token:
                del self._local_locks[storage_id]
        if self.redis_ops is not None:
            yield from self.on_redis(self.redis_ops.unlock(storage_id, token))

    def destroy(self, storage_id: str) -> Op[bool]:
        """Delete a session everywhere; ``True`` when one existed."""
        in_memory = self.memory.destroy(storage_id)
        with self._lock:
            self._outage_born.discard(storage_id)
            self._dirty.pop(storage_id, None)
        if self.redis_ops is None:
            return in_memory
        in_redis = yield from self.on_redis(self.redis_ops.destroy(storage_id))
        if in_redis is not USE_MEMORY:
            return in_redis or in_memory
        with self._lock:
            self._tombstones.add(storage_id)
        return in_memory

    def _servable(self, storage_id: str) -> bool:
        """Whether memory may answer for ``storage_id`` without Redis (see :mod:`.coherence`)."""
        if self.redis_ops is None or storage_id in self._outage_born:
            return True
        return self.coherence.covers(self.memory.confirmed(storage_id))

    def mirrored(self, storage_id: str, now_ms: int) -> Fields | None:
        """The copy memory would serve for ``storage_id`` while degraded, without touching it."""
        return self.memory.peek(storage_id, now_ms) if self._servable(storage_id) else None

    def changed(self, storage_id: str) -> None:
        """Another process wrote ``storage_id``'s data in Redis (the channel): drop this copy."""
        with self._mirror_lock:
            self.coherence.revoked(storage_id)
            self.memory.destroy(storage_id)

    def revoked(self, storage_id: str) -> None:
        """A process destroyed ``storage_id`` in Redis (the revocation channel): drop every copy."""
        with self._mirror_lock:
            self.coherence.revoked(storage_id)
            self.memory.destroy(storage_id)
        with self._lock:
            self._dirty.pop(storage_id, None)
            self._outage_born.discard(storage_id)

    def count(self) -> Op[tuple[int | None, int]]:
        """``(sessions in Redis or None when unknown, sessions only in memory)``."""
        now = self.clock()
        if self.redis_ops is not None:
            in_redis = yield from self.on_redis(self.redis_ops.count(now))
            if in_redis is not USE_MEMORY:
                return in_redis, self.memory_only_sessions(now)
        return None, self.memory.count(now)

    def memory_only_sessions(self, now: int) -> int:
        """Sessions served from memory that Redis does not hold: those created during an
        outage and not copied yet; every live one in memory while degraded or memory-only."""
        if self._use_redis():
            return sum(1 for s in list(self._outage_born) if self.memory.peek(s, now))
        return self.memory.count(now)

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
        """Check, at start, that Redis answers, accepts writes and scripts and is new enough;
        opens the circuit if not.

        An unusable Redis is treated like an unreachable one: sessions are served from memory,
        the reason is in ``last_error`` (health) and the log, and the probe keeps checking. A
        configuration mistake is told apart (:meth:`config_error`): the service refuses to start
        on one, and health names it.
        """
        if self.redis_ops is None:
            return True
        try:
            checked = yield from self.on_redis(self.redis_ops.check_ready())
        except RedisTooOldError as exc:
            self._report_too_old(exc)
            self.trip(exc, TOO_OLD)
            return False
        return checked is not USE_MEMORY

    def _report_too_old(self, exc: RedisTooOldError) -> None:
        before = self.last_error
        self._note(exc, TOO_OLD)
        if self.last_error != before:  # once per outage, not once per probe
            log.error("%s", exc)

    # -- recovery ------------------------------------------------------------------------------

    def recover(self) -> Op[bool]:
        """Try Redis; if it answers, reconcile and close the circuit. ``True`` once healthy."""
        if self.redis_ops is None or not self.degraded:
            return True
        try:
            yield from self.redis_ops.check_ready()
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
                        self.fault = None
                        break
        except RedisTooOldError as exc:
            self._report_too_old(exc)
            return False
        except Exception as exc:
            # Whatever the probe met, health names it: an error with no fault of its own too
            # (a busy script, a bug), else it would keep naming an earlier, different fault.
            fault = classify(exc) or UNCLASSIFIED
            with self._lock:
                changed, before = fault != self.fault, self.last_error
                self._note(exc, fault)
            if fault is UNCLASSIFIED and self.last_error != before:  # once, not every probe
                log.error("%s", self.last_error, exc_info=exc)
            elif changed and fault.config:
                log.error("Redis fault changed, still in degraded mode: %s", self.last_error)
            return False
        finally:
            self._recovering = False
        outage = time.time() - (self.degraded_since or time.time())
        log.warning("%s (after %.1f s in degraded mode)", RECOVERED_MESSAGE, outage)
        self.events.emit("recovered")
        if self.observer is not None:
            self.observer.mode_changed(False)
        return True

    def _copy_dirty(self) -> Op[None]:
        now = self.clock()
        with self._lock:
            batch = dict(list(self._dirty.items())[:RECOVERY_BATCH])
        if self.migrate_on_recovery:
            assert self.redis_ops is not None
            records = []
            for storage_id in batch:
                fields = self.memory.peek(storage_id, now)
                if fields is not None:
                    records.append((storage_id, fields, int(fields[F_EXPIRES])))
            written = yield from self.redis_ops.put_many_if_newer(records, self.writer)
            for (storage_id, fields, _), restored in zip(records, written, strict=True):
                log.info("Session copied from memory to Redis: %s", short(storage_id))
                if restored:
                    for hook in self.restore_hooks:
                        hook(storage_id, fields)
        with self._lock:
            for storage_id, version in batch.items():
                if self._dirty.get(storage_id) == version:  # untouched while we copied it
                    del self._dirty[storage_id]
                    if self.migrate_on_recovery:
                        self._outage_born.discard(storage_id)

    def sweep(self) -> int:
        """Drop expired sessions from memory and forget outage bookkeeping for them.

        Emits ``expired`` for the sessions memory was the authority on (memory-only, or created
        or changed during an outage); a mere mirror copy expiring says nothing about Redis's.
        """
        now = self.clock()
        removed = self.memory.take_expired(now)
        with self._lock:
            own = {s for s, _ in removed if self.redis_ops is None or s in self._outage_born}
            own.update(s for s, _ in removed if s in self._dirty)
            self._outage_born = {s for s in self._outage_born if self.memory.peek(s, now)}
        for storage_id, fields in removed:
            if storage_id in own:
                self.events.emit("expired", storage_id, user_id=fields.get(F_USER))
        return len(removed)
