"""Session events for library users: ``hub.events.subscribe(callback)``.

Operations only *emit*: an append to a bounded queue, so nothing on the request path waits for a
subscriber. The hub's dispatcher (:class:`EventThread` on the blocking hub, :class:`EventTask` on
the asyncio hub) drains the queue and calls every subscriber, plain function or coroutine
function; an exception in one is logged and changes nothing else. See ``docs/EVENTS.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger("sessionhub.events")

EventKind = Literal["created", "refreshed", "destroyed", "expired", "degraded", "recovered"]

DEFAULT_QUEUE_SIZE = 10_000
DROP_LOG_INTERVAL_S = 60.0


@dataclass(frozen=True)
class SessionEvent:
    """What happened to a session, or to the store (``degraded``, ``recovered``).

    ``storage_id`` is the full id (empty for the store's events): it names the session's key but
    cannot be turned into its token. ``reason`` says why a session was destroyed (``logout``,
    ``revoked``, ``limit``, ``admin``, ``login``, ``regenerated``) or what fault opened the
    circuit; ``at_ms`` is Unix milliseconds.
    """

    kind: EventKind
    storage_id: str
    user_id: str | None
    reason: str | None
    at_ms: int

    @property
    def short_storage_id(self) -> str:
        """The storage id's first 8 characters, the form logs show."""
        return self.storage_id[:8]

    def as_dict(self) -> dict[str, str | int | None]:
        """The event as JSON-ready fields (the webhook body)."""
        return {
            "kind": self.kind,
            "storage_id": self.storage_id,
            "short_storage_id": self.short_storage_id,
            "user_id": self.user_id,
            "reason": self.reason,
            "at_ms": self.at_ms,
        }


Callback = Callable[[SessionEvent], Awaitable[None] | None]
"""A subscriber: a plain function, or a coroutine function, of one :class:`SessionEvent`."""


def _nothing() -> None:
    pass


class DropCounter:
    """Counts the events a full queue dropped and says so in the log, at most once a minute (a
    full queue drops one per event)."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.count = 0
        self._log = logger
        self._what = what
        self._logged_at = -DROP_LOG_INTERVAL_S

    def add(self) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._logged_at >= DROP_LOG_INTERVAL_S:
            self._logged_at = now
            self._log.warning("%s: oldest events dropped, %d so far", self._what, self.count)


class EventBus:
    """Subscribers and the bounded queue between emitting operations and the dispatcher.

    A full queue drops its oldest event; :attr:`dropped` counts them.
    """

    def __init__(self, *, max_queued: int = DEFAULT_QUEUE_SIZE, clock: Callable[[], int]) -> None:
        self.max_queued = max_queued
        self.clock = clock
        self.keyspace = False
        """Whether Redis reports expiries (keyspace notifications enabled): the index sweep then
        emits none, or every expiry would arrive twice."""
        self.wake: Callable[[], None] = _nothing
        """Set by the dispatcher: called when the queue stops being empty."""
        self._callbacks: list[Callback] = []
        self._queue: deque[tuple[SessionEvent, bool]] = deque()
        self._lock = threading.Lock()
        self._drops = DropCounter(
            log, f"Session event queue full (EVENTS.QUEUE_SIZE = {max_queued})"
        )

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback`` with every event from now on; returns what unsubscribes it."""
        with self._lock:
            self._callbacks = [*self._callbacks, callback]

        def unsubscribe() -> None:
            with self._lock:
                self._callbacks = [c for c in self._callbacks if c is not callback]

        return unsubscribe

    def emit(
        self,
        kind: EventKind,
        storage_id: str = "",
        *,
        user_id: str | None = None,
        reason: str | None = None,
        claim: bool = False,
    ) -> None:
        """Queue an event for the dispatcher (nothing at all without subscribers).

        ``claim``: another process may see the same expiry (a keyspace notification reaches
        every subscriber), so the dispatcher delivers it only if this process claims it first.
        """
        if not self._callbacks:
            return
        event = SessionEvent(kind, storage_id, user_id, reason, self.clock())
        with self._lock:
            was_empty = not self._queue
            if len(self._queue) >= self.max_queued:
                self._queue.popleft()
                self._drops.add()
            self._queue.append((event, claim))
        if was_empty:
            self.wake()

    @property
    def dropped(self) -> int:
        """Events dropped from the full queue so far."""
        return self._drops.count

    def take(self) -> list[tuple[SessionEvent, bool]]:
        """Everything queued, oldest first, with whether each must be claimed first."""
        with self._lock:
            taken = list(self._queue)
            self._queue.clear()
        return taken

    def deliver(self, event: SessionEvent) -> list[Awaitable[None]]:
        """Call every subscriber; returns what the coroutine functions gave, for the dispatcher
        to run (each already guarded: its exception is logged, not raised)."""
        pending: list[Awaitable[None]] = []
        for callback in self._callbacks:
            try:
                result = callback(event)
            except Exception:
                log.exception("Session event subscriber %r failed on %s", callback, event.kind)
                continue
            if inspect.isawaitable(result):
                pending.append(_guarded(result, callback, event))
        return pending


async def _guarded(result: Awaitable[None], callback: Callback, event: SessionEvent) -> None:
    try:
        await result
    except Exception:
        log.exception("Session event subscriber %r failed on %s", callback, event.kind)


class EventThread:
    """The blocking hub's dispatcher: a daemon thread, with an event loop of its own for the
    coroutine functions among the subscribers."""

    def __init__(self, bus: EventBus, claim: Callable[[str], bool]) -> None:
        self.bus = bus
        self.claim = claim
        self._ready = threading.Event()
        self._stop = False
        self._loop: asyncio.AbstractEventLoop | None = None
        bus.wake = self._ready.set
        self._thread = threading.Thread(target=self._run, name="sessionhub-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._ready.wait()
            self._ready.clear()
            stopping = self._stop  # read first: what was queued before close() still goes out
            for event, claim in self.bus.take():
                if claim and not self._claimed(event.storage_id):
                    continue
                for pending in self.bus.deliver(event):
                    self._run_coroutine(pending)
            if stopping:
                break
        if self._loop is not None:
            self._loop.close()

    def _claimed(self, storage_id: str) -> bool:
        try:
            return self.claim(storage_id)
        except Exception:  # a claim that cannot be made must not end the dispatcher
            log.debug("expiry claim failed", exc_info=True)
            return False

    def _run_coroutine(self, pending: Awaitable[None]) -> None:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(pending)

    def close(self) -> None:
        """Deliver what is queued, then stop."""
        self._stop = True
        self._ready.set()
        self._thread.join(timeout=5)


class EventTask:
    """The asyncio hub's dispatcher: a task on the hub's loop, which awaits coroutine
    subscribers one after the other (plain ones run on the loop: keep them quick)."""

    def __init__(self, bus: EventBus, claim: Callable[[str], Awaitable[bool]]) -> None:
        self.bus = bus
        self.claim = claim
        self._ready = asyncio.Event()
        self._stop = False
        self._loop = asyncio.get_running_loop()
        bus.wake = self._wake
        self._task = asyncio.create_task(self._run(), name="sessionhub-events")

    def _wake(self) -> None:
        # Operations run on the hub's loop; anything emitting from another thread must not
        # touch an asyncio.Event directly.
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._ready.set()
        else:
            self._loop.call_soon_threadsafe(self._ready.set)

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            stopping = self._stop  # read first: what was queued before aclose() still goes out
            for event, claim in self.bus.take():
                if claim and not await self._claimed(event.storage_id):
                    continue
                for pending in self.bus.deliver(event):
                    await pending
            if stopping:
                return

    async def _claimed(self, storage_id: str) -> bool:
        try:
            return await self.claim(storage_id)
        except Exception:  # a claim that cannot be made must not end the dispatcher
            log.debug("expiry claim failed", exc_info=True)
            return False

    async def aclose(self) -> None:
        """Deliver what is queued (for up to 5 s), then stop."""
        self._stop = True
        self._ready.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 5)
        except asyncio.TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
