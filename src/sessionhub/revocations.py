"""One subscription per process to the revocation channel, which keeps its mirror coherent.

``destroy.lua`` publishes the storage id of every session it destroys, and the data writes
publish ``<sid>:<writer>``; the subscriber drops the session from this process's mirror (its read
cache), and each (re)subscription moves the mirror's link epoch on (see
:mod:`sessionhub.stores.coherence`). The blocking hub runs it in a daemon thread, the asyncio hub
in a task; each on a pool of its own with the client's settings, so that neither a blocking read
nor the probe's dropping of the client's connections touches the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import redis

from .stores.resilient import ResilientCore
from .stores.topology import AsyncClient, SyncClient
from .subscribers import (
    Feed,
    Liveness,
    aread_slots_again,
    cancel_subscriber,
    read_slots_again,
    with_own_pool,
)

log = logging.getLogger("sessionhub.revocations")

LISTEN_TIMEOUT = 0.2
"""Seconds a read waits for a message: how soon the thread sees that it must stop, and how
often a subscriber checks that its link is alive (:class:`~.subscribers.Liveness`)."""


class RevocationFeed:
    """What the subscription does with each message, for either kind of subscriber."""

    def __init__(self, core: ResilientCore, wake_probe: Callable[[], None]) -> None:
        assert core.redis_ops is not None
        self.core = core
        self.channel = core.redis_ops.keys.revoked()
        self.wake_probe = wake_probe
        self.retry_s = 0.1
        """Pause between two attempts to subscribe while Redis does not answer."""
        self._refused = ""

    def lost(self, exc: Exception, *, redis_answers: bool) -> None:
        """The subscription failed; a refusal (an ACL user without the channel) is said once.

        ``redis_answers``: whether Redis answered a PING right after. If not, the link went down
        with Redis, and nothing can have been destroyed while it was unreachable.
        """
        if isinstance(exc, redis.ResponseError) and str(exc) != self._refused:
            self._refused = str(exc)
            log.error(
                "Redis refused the revocation channel %s (%s): mirrored sessions are not served "
                "during an outage; allow the channel to the Redis user",
                self.channel,
                exc,
            )
        else:
            log.debug("revocation channel lost; subscribing again", exc_info=exc)
        self.core.coherence.unlinked(with_redis=not redis_answers)

    def handle(self, message: dict[str, Any] | None) -> bool:
        """Apply one message; ``True`` when it says the subscription is (re)established."""
        if message is None:
            return False
        kind = message.get("type")
        if kind == "message":
            sid, changed, writer = str(message["data"]).partition(":")
            if not changed:
                self.core.revoked(sid)
            elif writer != self.core.writer:  # this process's own writes update its copy
                self.core.changed(sid)
        elif kind == "subscribe":
            degraded = self.core.degraded
            self.core.coherence.linked(degraded=degraded)
            if degraded:  # Redis answers again: recover now rather than at the next probe
                self.wake_probe()
            return True
        return False


class RevocationThread:
    """The blocking hub's subscriber: a daemon thread on a connection of its own (for the
    keyspace notifications too, with their feed)."""

    def __init__(self, feed: Feed, client: SyncClient, name: str = "revocations") -> None:
        self.feed = feed
        self.client = with_own_pool(client)
        self._stop = threading.Event()
        self._linked = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sessionhub-{name}", daemon=True)

    def start(self, wait_s: float) -> None:
        """Start, and wait up to ``wait_s`` for the first subscription: sessions read before it
        are not vouched for, so a hub serves best once it is there."""
        self._thread.start()
        self._linked.wait(wait_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            pubsub = self.client.pubsub()  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(self.feed.channel)
                alive = Liveness()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=LISTEN_TIMEOUT)
                    if message is not None:
                        alive.heard()
                    if self.feed.handle(message):
                        self._linked.set()
                    if alive.ping_due():
                        pubsub.ping()
            except Exception as exc:  # the link is lost
                self.feed.lost(exc, redis_answers=self._answers())
                read_slots_again(self.client)
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()
            self._stop.wait(self.feed.retry_s)

    def _answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except Exception:  # unreachable, loading, refusing: not a Redis that destroys sessions
            return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.client.close()


class RevocationTask:
    """The asyncio hub's subscriber: a task on a connection of its own (for the keyspace
    notifications too, with their feed)."""

    def __init__(self, feed: Feed, client: AsyncClient, name: str = "revocations") -> None:
        self.feed = feed
        self.client = with_own_pool(client)
        self.name = f"sessionhub-{name}"
        self._task: asyncio.Task[None] | None = None

    async def start(self, wait_s: float) -> None:
        """Start, and wait up to ``wait_s`` for the first subscription (see
        :meth:`RevocationThread.start`)."""
        linked = asyncio.Event()
        self._task = asyncio.create_task(self._run(linked), name=self.name)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(linked.wait(), wait_s)

    async def _run(self, linked: asyncio.Event) -> None:
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(self.feed.channel)
                alive = Liveness()
                while True:
                    message = await pubsub.get_message(timeout=LISTEN_TIMEOUT)
                    if message is not None:
                        alive.heard()
                    if self.feed.handle(message):
                        linked.set()
                    if alive.ping_due():
                        await pubsub.ping()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the link is lost
                self.feed.lost(exc, redis_answers=await self._answers())
                await aread_slots_again(self.client)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(self.feed.retry_s)

    async def _answers(self) -> bool:
        try:
            return bool(await self.client.ping())
        except Exception:  # unreachable, loading, refusing: not a Redis that destroys sessions
            return False

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await cancel_subscriber(task)
        await self.client.aclose()
