"""The public entry points: :class:`SessionHub` (blocking) and :class:`AsyncSessionHub` (asyncio).

Both run the same operations (:class:`~sessionhub.manager.SessionManager`) and differ only in how
they reach Redis and how they run their background work: a daemon thread or an asyncio task that
sweeps the memory store every ``SESSION.MEMORY_CLEANUP_INTERVAL`` seconds and, while degraded,
probes Redis every ``REDIS.PROBE_INTERVAL`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster

from .config import EventsSettings, RedisSettings, Settings
from .events import EventBus, EventTask, EventThread
from .exceptions import ConfigError
from .expiries import ExpiryFeed, claim_expiry, enable_notifications
from .features import FeatureFronts, build_features
from .freshness import require_fresh
from .frontends import Awaiting, Blocking, Front, M, operation, retried
from .locks import DEFAULT_BLOCK, DEFAULT_TTL, AsyncSessionLock, SessionLock
from .manager import SessionManager
from .revocations import RevocationFeed, RevocationTask, RevocationThread
from .session import Session
from .stores.autopipeline import AutoPipeline
from .stores.base import Op
from .stores.busy import CallSlots
from .stores.cluster import AsyncClusterCalls, ClusterCalls
from .stores.drivers import HeldConnections, run_async, run_sync
from .stores.memory import MemoryStore
from .stores.redis import KeySpace, RedisOps, count_bucket_ms
from .stores.resilient import Lifetimes, ResilientCore
from .stores.topology import (
    AsyncClient,
    HeldSyncClient,
    LazyCluster,
    SyncClient,
    async_client,
    held,
    sync_client,
)
from .stores.topology import redis_client_kwargs as redis_client_kwargs
from .tokens import TokenCodec
from .valuecodec import ValueCodec, parse_key
from .webhooks import WebhookConfig, WebhookSender

log = logging.getLogger("sessionhub")

T = TypeVar("T")

_EPHEMERAL_SECRET = secrets.token_bytes(32)


def resolve_secret(settings: Settings) -> bytes:
    """``SECRET_KEY``, or a per-process random key (dev only) with a warning."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    log.warning(
        "No SECRET_KEY set: using a random key; sessions will not survive a restart "
        "and are not shared between processes (set SECRET_KEY)"
    )
    return _EPHEMERAL_SECRET


def build_values(settings: Settings) -> ValueCodec:
    """The codec every stored value goes through: ``ENCRYPTION.KEYS``, ``COMPRESS_THRESHOLD``."""
    keys = [(k.id, parse_key(k.id, k.key.get_secret_value())) for k in settings.encryption.keys]
    return ValueCodec(keys, compress_threshold=settings.session.compress_threshold)


def build_manager(settings: Settings, *, with_redis: bool) -> SessionManager:
    """The session manager the settings describe."""
    ss = settings.session
    keys = KeySpace(ss.key_prefix, ss.index_shards)
    ops = None
    if with_redis:
        rs = settings.redis
        ops = RedisOps(
            keys,
            count_bucket_ms(ss.expires * 1000),
            count_bucket_ms(ss.remember_expires * 1000),
            wait_replicas=rs.wait_replicas,
            # Half the socket timeout: WAIT's own answer must arrive before the client gives up.
            wait_timeout_ms=max(1, int(rs.socket_timeout * 500)),
        )
    core = ResilientCore(
        ops,
        MemoryStore(ss.memory_max_sessions, ss.local_cache_size),
        lifetimes=Lifetimes(
            idle_ms=ss.expires * 1000,
            absolute_ms=ss.absolute_lifetime * 1000,
            refresh_threshold_ms=ss.refresh_threshold * 1000,
            remember_idle_ms=ss.remember_expires * 1000,
            remember_absolute_ms=ss.remember_absolute_lifetime * 1000,
        ),
        migrate_on_recovery=ss.migrate_on_recovery,
        event_queue=settings.events.queue_size,
    )
    fallbacks = [old.get_secret_value().encode() for old in settings.secret_key_fallbacks]
    codec = TokenCodec(resolve_secret(settings), use_signer=ss.use_signer, fallbacks=fallbacks)
    return SessionManager(
        core,
        codec,
        max_per_user=ss.max_per_user,
        values=build_values(settings),
        max_bytes=ss.max_bytes,
    )


def start_webhook(es: EventsSettings, bus: EventBus) -> WebhookSender | None:
    """The webhook sender ``EVENTS.WEBHOOK_URL`` asks for, subscribed to ``bus``."""
    if es.webhook_url is None or es.webhook_secret is None:
        return None
    sender = WebhookSender(
        WebhookConfig(
            url=es.webhook_url,
            secret=es.webhook_secret.get_secret_value().encode(),
            timeout_s=es.webhook_timeout,
            max_attempts=es.webhook_max_attempts,
            backoff_s=es.webhook_backoff,
            queue_size=es.webhook_queue_size,
        )
    )
    bus.subscribe(sender.submit)
    return sender


def call_slots(rs: RedisSettings) -> CallSlots:
    """How many cluster calls may be in flight, and how long more wait (see :mod:`.stores.busy`)."""
    return CallSlots(rs.max_connections, rs.socket_timeout)


AsyncCalls = AutoPipeline | AsyncClusterCalls | aioredis.Redis


def async_calls(client: AsyncClient, rs: RedisSettings) -> AsyncCalls:
    """What the asyncio front ends send their calls through: the cluster's routing, else the
    auto-pipeline, else (a client it cannot dial, given by the application) the client's pool."""
    if isinstance(client, aiocluster.RedisCluster):
        if not AsyncClusterCalls.supports(client):
            raise ConfigError(
                "the asyncio hub's RedisCluster client must speak RESP2 without a "
                "credential_provider (its calls go through SessionHub's own per-node "
                "pipelines); pass such a client, or none and set REDIS.MODE: cluster"
            )
        return AsyncClusterCalls(client)
    if AutoPipeline.supports(client):
        return AutoPipeline(client)
    return client


async def close_async(client: AsyncClient, calls: AsyncCalls) -> None:
    """Close ``client`` and the connection ``calls`` holds of its own."""
    if isinstance(calls, AutoPipeline | AsyncClusterCalls):
        await calls.disconnect()
    await client.aclose()


C = TypeVar("C", HeldSyncClient, AsyncClient)


class _Hub(Front[SessionManager, M], FeatureFronts[M], Generic[C, M]):
    """What both front ends hold: settings, the manager, a Redis client unless memory-only, the
    session operations and the features, run in mode ``M``."""

    open = operation(SessionManager.open)
    create = operation(SessionManager.create)
    login = operation(SessionManager.login)
    bind_user = operation(SessionManager.bind_user)
    regenerate = operation(SessionManager.regenerate)
    reauthenticate = operation(SessionManager.reauthenticate)
    revoke_all = operation(SessionManager.revoke_all)
    credentials_changed = operation(SessionManager.credentials_changed)
    extend = operation(SessionManager.extend)
    save = operation(SessionManager.save)
    increment = retried(SessionManager.increment)
    append = retried(SessionManager.append)
    destroy = operation(SessionManager.destroy)
    stats = operation(SessionManager.stats)
    health = operation(SessionManager.health)

    def __init__(
        self,
        settings: Settings,
        client: C | None,
        build: Callable[[RedisSettings], C],
        mode: M,
    ) -> None:
        self.settings = settings
        use_redis = settings.session.type == "redis"
        self.manager = build_manager(settings, with_redis=use_redis)
        self.features = build_features(settings, self.manager)
        self.client: C | None = None
        if use_redis:
            self.client = client or build(settings.redis)
        Front.__init__(self, self.manager, mode)
        FeatureFronts.__init__(self, self.features, mode)
        self.events: EventBus = self.manager.core.events
        """``hub.events.subscribe(callback)``: session events (see ``docs/EVENTS.md``)."""
        self.webhook = start_webhook(settings.events, self.events)

    def _expiry_feed(self) -> ExpiryFeed | None:
        """The keyspace notification feed, once Redis was asked to send them (at start and after
        every outage); ``None`` unless ``EVENTS.ENABLE_KEYSPACE_NOTIFICATIONS``."""
        core = self.manager.core
        if not self.settings.events.enable_keyspace_notifications or self.client is None:
            return None
        assert core.redis_ops is not None
        core.recovery_hooks.append(lambda: enable_notifications(self.events))
        pool = getattr(self.client, "connection_pool", None)  # a cluster has only db 0
        db = 0 if pool is None else int(pool.connection_kwargs.get("db", 0))
        return ExpiryFeed(self.events, core.redis_ops.keys, db)

    def require_fresh(self, session: Session, max_age: int, level: str | None = None) -> None:
        """Raise :class:`~sessionhub.exceptions.ReauthRequiredError` unless the session's user
        authenticated within ``max_age`` seconds, at ``level`` (of ``AUTH.LEVELS``) or stronger.
        No I/O: the session already holds when and how."""
        require_fresh(
            session.record,
            max_age,
            level,
            now_ms=self.manager.core.clock(),
            levels=self.settings.auth.levels,
        )

    def _first_link_wait(self) -> float:
        """How long starting waits for the revocation subscription: not at all without Redis."""
        if not self.manager.core.redis_up:
            return 0.0
        return self.settings.redis.connect_timeout + self.settings.redis.socket_timeout


class SessionHub(_Hub[HeldSyncClient, Blocking]):
    """Blocking session API over redis-py, with the memory fallback and its maintenance thread.

    Building one checks that Redis answers and is new enough (see :meth:`ResilientCore.verify`).
    The session methods are :class:`~sessionhub.manager.SessionManager`'s operations, run to
    completion; the per-user features are ``user_sessions``, ``preferences``, ``presence`` and
    ``inbox``.
    """

    def __init__(self, settings: Settings, *, client: SyncClient | None = None) -> None:
        given = None if client is None else held(client)
        super().__init__(settings, given, sync_client, Blocking(self.run))
        self._calls: HeldConnections | ClusterCalls | None = None
        if isinstance(self.client, LazyCluster):
            self._calls = ClusterCalls(self.client, call_slots(settings.redis))
        elif self.client is not None:
            self._calls = HeldConnections(self.client)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.manager.core.on_degraded = self._wake.set
        self._thread = threading.Thread(
            target=self._maintain, name="sessionhub-maintenance", daemon=True
        )
        self._thread.start()
        core = self.manager.core
        self._events = EventThread(
            self.events, lambda storage_id: self.run(claim_expiry(core, storage_id))
        )
        self.run(core.verify())
        self._revocations: RevocationThread | None = None
        self._expiries: RevocationThread | None = None
        if self.client is not None:
            feed = RevocationFeed(core, self._wake.set)
            self._revocations = RevocationThread(feed, self.client)
            self._revocations.start(self._first_link_wait())
            expiry_feed = self._expiry_feed()
            if expiry_feed is not None:
                self.run(core.on_redis(enable_notifications(self.events)))
                self._expiries = RevocationThread(expiry_feed, self.client, "expiries")
                self._expiries.start(self._first_link_wait())

    def run(self, op: Op[T]) -> T:
        """Run any operation (a generator from the manager or the core) to completion."""
        return run_sync(op, self._calls, self.manager.core.observer)

    def lock(
        self, session: Session, *, block: float = DEFAULT_BLOCK, ttl: float = DEFAULT_TTL
    ) -> SessionLock:
        """The session's lock, waiting up to ``block`` seconds for it (see :mod:`.locks`)."""
        return SessionLock(self.run, self.manager, session, block, ttl)

    def _maintain(self) -> None:
        core = self.manager.core
        probe = self.settings.redis.probe_interval
        cleanup = self.settings.session.memory_cleanup_interval
        next_sweep = time.monotonic() + cleanup
        while not self._stop.is_set():
            timeout = probe if core.degraded else max(0.0, next_sweep - time.monotonic())
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stop.is_set():
                return
            if core.degraded and self.client is not None:
                try:
                    # Requests still read on them while Redis refuses only writes; a cluster
                    # client redials by itself.
                    if not core.reads_from_redis and isinstance(self.client, redis.Redis):
                        self.client.connection_pool.disconnect()
                    run_sync(core.recover(), self._calls)  # no observer: probes are not traffic
                except Exception:  # a probe must never kill the thread
                    log.debug("probe failed", exc_info=True)
            if time.monotonic() >= next_sweep:
                core.sweep()
                next_sweep = time.monotonic() + cleanup

    def close(self) -> None:
        """Stop the maintenance, revocation and event threads and close the connection pool."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        for subscriber in (self._revocations, self._expiries):
            if subscriber is not None:
                subscriber.close()
        self._events.close()
        if self.webhook is not None:
            self.webhook.close()
        if self.client is not None:
            self.client.close()


class AsyncSessionHub(_Hub[AsyncClient, Awaiting]):
    """Asyncio session API over redis.asyncio; same operations as :class:`SessionHub`."""

    def __init__(self, settings: Settings, *, client: AsyncClient | None = None) -> None:
        super().__init__(settings, client, async_client, Awaiting(self.run))
        self._calls: AsyncCalls | None = None
        if self.client is not None:
            self._calls = async_calls(self.client, settings.redis)
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._revocations: RevocationTask | None = None
        self._expiries: RevocationTask | None = None
        self._events: EventTask | None = None
        self.manager.core.on_degraded = self._on_degraded

    def _on_degraded(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def start(self) -> None:
        """Start the maintenance task and check Redis (done on first use if not called)."""
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._maintain(), name="sessionhub-maintenance")
            core = self.manager.core
            self._events = EventTask(
                self.events, lambda storage_id: self.run(claim_expiry(core, storage_id))
            )
            await self.run(core.verify())
            if self.client is not None:
                feed = RevocationFeed(core, self._on_degraded)
                self._revocations = RevocationTask(feed, self.client)
                await self._revocations.start(self._first_link_wait())
                expiry_feed = self._expiry_feed()
                if expiry_feed is not None:
                    await self.run(core.on_redis(enable_notifications(self.events)))
                    self._expiries = RevocationTask(expiry_feed, self.client, "expiries")
                    await self._expiries.start(self._first_link_wait())

    async def run(self, op: Op[T]) -> T:
        """Run any operation (a generator from the manager or the core) to completion."""
        if self._task is None:
            await self.start()
        return await run_async(op, self._calls, self.manager.core.observer)

    def lock(
        self, session: Session, *, block: float = DEFAULT_BLOCK, ttl: float = DEFAULT_TTL
    ) -> AsyncSessionLock:
        """The session's lock, waiting up to ``block`` seconds for it (see :mod:`.locks`)."""
        return AsyncSessionLock(self.run, self.manager, session, block, ttl)

    async def _maintain(self) -> None:
        assert self._wake is not None
        core = self.manager.core
        probe = self.settings.redis.probe_interval
        cleanup = self.settings.session.memory_cleanup_interval
        next_sweep = time.monotonic() + cleanup
        # A flag as well as cancel(): a cancel that lands as a probe's socket timeout fires can
        # surface as a Redis TimeoutError (seen with Sentinel), which the probe's `except
        # Exception` swallows; without the flag the loop went on and aclose() waited forever.
        while not self._closing:
            timeout = probe if core.degraded else max(0.0, next_sweep - time.monotonic())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            if core.degraded and self.client is not None:
                try:
                    if not core.reads_from_redis:  # else requests still read on them
                        if isinstance(self.client, aioredis.Redis):  # a cluster redials itself
                            await self.client.connection_pool.disconnect()
                        if isinstance(self._calls, AutoPipeline | AsyncClusterCalls):
                            await self._calls.disconnect()
                    await run_async(core.recover(), self._calls)  # no observer: not traffic
                except Exception:  # a probe must never kill the task
                    log.debug("probe failed", exc_info=True)
            if time.monotonic() >= next_sweep:
                core.sweep()
                next_sweep = time.monotonic() + cleanup

    async def aclose(self) -> None:
        """Stop the maintenance, revocation and event tasks and close the connection pool."""
        for subscriber in (self._revocations, self._expiries):
            if subscriber is not None:
                await subscriber.aclose()
        self._revocations = self._expiries = None
        if self._events is not None:
            await self._events.aclose()
            self._events = None
        if self.webhook is not None:
            await asyncio.to_thread(self.webhook.close)
        if self._task is not None:
            self._closing = True
            if self._wake is not None:
                self._wake.set()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self._closing = False
        if self.client is not None and self._calls is not None:
            await close_async(self.client, self._calls)
