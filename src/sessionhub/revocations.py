"""One subscription per process to the revocation channel, which keeps its mirror coherent.

``destroy.lua`` publishes the storage id of every session it destroys, and the data writes
publish ``<storage_id>:<writer>``; the subscriber drops the session from this process's mirror
(its read cache), and each (re)subscription moves the mirror's link epoch on (see
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

import hiredis
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from .stores.resilient import ResilientCore
from .stores.topology import AsyncClient, HeldSyncClient, ready
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
            storage_id, changed, writer = str(message["data"]).partition(":")
            if not changed:
                self.core.revoked(storage_id)
            elif writer != self.core.writer:  # this process's own writes update its copy
                self.core.changed(storage_id)
        elif kind == "subscribe":
            degraded = self.core.degraded
            self.core.coherence.linked(degraded=degraded)
            if degraded:  # Redis answers again: recover now rather than at the next probe
                self.wake_probe()
            return True
        return False


CLOSED = "Redis closed the revocation subscription"


def _reader() -> hiredis.Reader:
    return hiredis.Reader(replyError=redis.ResponseError, encoding="utf-8")


def _drain(feed: Feed, reader: hiredis.Reader) -> bool:
    """Apply every message ``reader`` holds whole; ``True`` when one says the subscription is
    (re)established. A refusal (an ACL without the channel) is raised."""
    linked = False
    while (reply := reader.gets()) is not False:
        if isinstance(reply, Exception):
            raise reply
        if len(reply) < 3:  # a ping's answer, ["pong", ""]: the link is alive, nothing to apply
            continue
        linked = feed.handle({"type": reply[0], "data": reply[2]}) or linked
    return linked


class RevocationThread:
    """The blocking hub's subscriber: a daemon thread on a connection of its own (for the
    keyspace notifications too, with their feed)."""

    def __init__(self, feed: Feed, client: HeldSyncClient, name: str = "revocations") -> None:
        self.feed = feed
        self.client = with_own_pool(client)
        self._owned = self.client is not client
        """Whether :meth:`close` closes ``client``: a cluster's is the hub's, used as it is."""
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
            try:
                client = ready(self.client)  # a cluster's is built once one answers
                if isinstance(client, RedisCluster):
                    self._listen_pubsub(client)
                else:
                    self._listen(client)
            except Exception as exc:  # the link is lost
                self.feed.lost(exc, redis_answers=self._answers())
                read_slots_again(self.client)
            self._stop.wait(self.feed.retry_s)

    def _listen(self, client: redis.Redis) -> None:
        """Subscribe on a connection of the pool and read the messages straight off its socket.

        One system call per wake-up, where ``PubSub.get_message`` makes four (a poll, two
        timeouts set, the read) and builds a dict per message: this process receives every write
        it makes itself, and that cost a tenth of a Flask read-modify-write's CPU (profiled).
        """
        pool = client.connection_pool
        conn: Any = pool.get_connection()  # redis-py leaves its connections untyped
        try:
            conn.send_command("SUBSCRIBE", self.feed.channel)
            sock = conn._sock  # connected by redis-py: TLS, AUTH and Sentinel are done
            sock.settimeout(LISTEN_TIMEOUT)
            reader = _reader()
            buffer = bytearray(65536)
            alive = Liveness()
            while not self._stop.is_set():
                try:
                    size = sock.recv_into(buffer)
                except TimeoutError:
                    size = -1
                if size == 0:
                    raise redis.ConnectionError(CLOSED)
                if size > 0:
                    alive.heard()
                    reader.feed(buffer, 0, size)  # type: ignore[arg-type]  # any buffer, as redis-py
                    if _drain(self.feed, reader):
                        self._linked.set()
                if alive.ping_due():
                    conn.send_command("PING")
        finally:
            conn.disconnect()  # never back to the pool subscribed
            pool.release(conn)

    def _listen_pubsub(self, client: RedisCluster) -> None:
        """A cluster's Pub/Sub picks the node; its messages come through redis-py's reader."""
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
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
        finally:
            with contextlib.suppress(Exception):
                pubsub.close()

    def _answers(self) -> bool:
        try:
            return bool(ready(self.client).ping())
        except Exception:  # unreachable, loading, refusing: not a Redis that destroys sessions
            return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._owned:
            self.client.close()


class RevocationTask:
    """The asyncio hub's subscriber: a task on a connection of its own (for the keyspace
    notifications and the inbox wake-ups too, each with its feed)."""

    def __init__(self, feed: Feed, client: AsyncClient, name: str = "revocations") -> None:
        self.feed = feed
        self.client = with_own_pool(client)
        self._owned = self.client is not client
        """Whether :meth:`aclose` closes ``client``: a cluster's is the hub's, which closing
        would disconnect under the hub's other subscriptions and calls."""
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
            try:
                if isinstance(self.client, AsyncRedisCluster):
                    await self._listen_pubsub(self.client, linked)
                else:
                    await self._listen(self.client, linked)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the link is lost
                self.feed.lost(exc, redis_answers=await self._answers())
                await aread_slots_again(self.client)
            await asyncio.sleep(self.feed.retry_s)

    async def _listen(self, client: aioredis.Redis, linked: asyncio.Event) -> None:
        """The mirror image of :meth:`RevocationThread._listen`: the messages read straight off
        the connection's stream, with no timeout object and no dict per read."""
        pool = client.connection_pool
        conn: Any = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_command("SUBSCRIBE", self.feed.channel)
            stream: asyncio.StreamReader = conn._reader  # connected: TLS, AUTH, Sentinel done
            reader = _reader()
            alive = Liveness()
            while True:
                try:
                    data: bytes | None = await asyncio.wait_for(stream.read(65536), LISTEN_TIMEOUT)
                except asyncio.TimeoutError:
                    data = None
                if data == b"":
                    raise redis.ConnectionError(CLOSED)
                if data:
                    alive.heard()
                    reader.feed(data)
                    if _drain(self.feed, reader):
                        linked.set()
                if alive.ping_due():
                    await conn.send_command("PING")
        finally:
            with contextlib.suppress(Exception):
                await conn.disconnect()  # never back to the pool subscribed
            await pool.release(conn)

    async def _listen_pubsub(self, client: AsyncRedisCluster, linked: asyncio.Event) -> None:
        """A cluster's Pub/Sub picks the node; its messages come through redis-py's reader."""
        pubsub = client.pubsub()
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
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _answers(self) -> bool:
        try:
            return bool(await self.client.ping())
        except Exception:  # unreachable, loading, refusing: not a Redis that destroys sessions
            return False

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await cancel_subscriber(task)
        if self._owned:
            await self.client.aclose()
