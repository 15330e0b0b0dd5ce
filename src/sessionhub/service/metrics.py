"""``GET /metrics``: SessionHub's figures in the Prometheus text format (prometheus_client).

Imported only when ``METRICS.ENABLED``. Three kinds of figures:

* Counters and histograms, counted where things happen (the session manager's and the core's
  observers, the routes); what happens on every request (its response, its Redis calls) is
  gathered by :class:`RequestPath` and written in bulk. With several workers
  (``PROMETHEUS_MULTIPROC_DIR`` set) each process writes its own file and a scrape sums them.
* What each worker holds (its memory store, its circuit): gauges each worker sets, summed
  (memory) or taken at their worst (``redis_up`` the minimum, ``degraded`` the maximum) over the
  live workers.
* What is the same for every worker (sessions counted in Redis, online users, Redis's ``INFO``):
  read by :class:`~.monitor.Monitor` in the background and added by the worker that answers the
  scrape, so that several workers do not add up one Redis.
"""

from __future__ import annotations

import asyncio
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from ..hub import AsyncSessionHub
from ..session import Session
from ..stores.base import Call, call_name
from .auth import require_admin
from .counts import Counts, LoginResult
from .monitor import Monitor

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# A _created sample per series doubles the scrape for a timestamp dashboards do not use.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Metrics are process-wide (their files in multiprocess mode are per process, not per app), so
# they live here once; each app's figures are set from its own hub.
REGISTRY = CollectorRegistry(auto_describe=False)

SESSIONS_ACTIVE = "sessionhub_sessions_active"
_MEMORY_ONLY = Gauge(
    SESSIONS_ACTIVE,
    "Live sessions, by where they are stored (redis: counted in Redis; memory: only in memory)",
    ["store"],
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
CREATED = Counter("sessionhub_sessions_created", "Sessions created", registry=REGISTRY)
DESTROYED = Counter(
    "sessionhub_sessions_destroyed",
    "Sessions that ended, by reason (expired: idled out, counted when its count bucket ends)",
    ["reason"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "sessionhub_session_duration_seconds",
    "How long a session lived, from creation to its destruction",
    buckets=(60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400),
    registry=REGISTRY,
)
REDIS_UP = Gauge(
    "sessionhub_redis_up",
    "1 while operations go to Redis (0 in any live worker whose circuit is open, or memory-only)",
    multiprocess_mode="livemin",
    registry=REGISTRY,
)
DEGRADED = Gauge(
    "sessionhub_degraded",
    "1 while any live worker serves sessions from memory because Redis cannot",
    multiprocess_mode="livemax",
    registry=REGISTRY,
)
TRANSITIONS = Counter(
    "sessionhub_degraded_transitions",
    "Times a worker entered or left degraded mode",
    ["direction"],
    registry=REGISTRY,
)
REDIS_DURATION = Histogram(
    "sessionhub_redis_command_duration_seconds",
    "Round trip of each Redis call, by script or command (a pipeline joins its distinct names)",
    ["operation"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0),
    registry=REGISTRY,
)
MEMORY_SESSIONS = Gauge(
    "sessionhub_memory_store_sessions",
    "Sessions held in the workers' memory stores (mirror copies included)",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
EVICTIONS = Counter(
    "sessionhub_memory_store_evictions",
    "Sessions evicted from a memory store full at SESSION.MEMORY_MAX_SESSIONS",
    registry=REGISTRY,
)
MESSAGES_SENT = Counter("sessionhub_messages_sent", "Messages stored in inboxes", registry=REGISTRY)
MESSAGES_DELIVERED = Counter(
    "sessionhub_messages_delivered", "Messages pushed on live event streams", registry=REGISTRY
)
LOGINS = Counter("sessionhub_logins", "Login attempts, by result", ["result"], registry=REGISTRY)
HTTP_REQUESTS = Counter(
    "sessionhub_http_requests",
    "HTTP requests, by route template, method and status",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "sessionhub_http_request_duration_seconds",
    "Time to answer an HTTP request (an event stream: until it ends), by route template",
    ["route", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
    registry=REGISTRY,
)
UNMATCHED = "unmatched"
"""The route label of a request no route matched: paths are not labels (unbounded)."""
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_SHARED = (
    ("sessionhub_online_users", "Users active within PRESENCE.WINDOW", "online_users"),
    ("sessionhub_redis_used_memory_bytes", "Redis INFO used_memory", "used_memory"),
    ("sessionhub_redis_maxmemory_bytes", "Redis INFO maxmemory (0: no limit)", "maxmemory"),
    ("sessionhub_redis_evicted_keys", "Redis INFO evicted_keys", "evicted_keys"),
    ("sessionhub_redis_connected_clients", "Redis INFO connected_clients", "connected_clients"),
)


DestroyReason = Literal["logout", "revoked", "limit", "admin", "replaced"]
"""Why a session was destroyed, in the metrics' words: its user logged out, revoked it from
another device, logged in beyond ``SESSION.MAX_PER_USER``, an operator revoked it, or a new token
replaced it. (Sessions that idle out are not destroyed: Redis expires them.)"""

_REPLACED = frozenset({"login", "regenerated", "reauthenticated", "rekeyed", "replaced"})
_KNOWN: frozenset[str] = frozenset({"logout", "revoked", "limit", "admin"})


def destroy_reason(reason: str) -> DestroyReason:
    """The metrics' name for ``reason``: a token rotation is ``replaced``; a reason of the
    application's own (``revoke_all``) counts as ``revoked``."""
    if reason in _REPLACED:
        return "replaced"
    return reason if reason in _KNOWN else "revoked"  # type: ignore[return-value]


class Observations:
    """Observations of one histogram, kept in plain Python until :meth:`flush` adds them to it
    in bulk (and their count to ``counter``, when given). A key is the histogram's label values;
    a ``counter``'s labels are the whole key."""

    def __init__(self, histogram: Histogram, counter: Counter | None = None) -> None:
        self.histogram = histogram
        self.counter = counter
        # prometheus_client has no call that adds many observations at once, so the flush
        # writes to the children's values (private, like these two attributes); a test checks
        # that a flush exposes what the same observations made one by one would.
        self._bounds: list[float] = list(histogram._upper_bounds)
        self._labels = len(histogram._labelnames)
        self._pending: dict[tuple[Any, ...], list[float]] = {}
        """key -> [count, sum, a count per bucket], since the last flush."""
        self._children: dict[tuple[Any, ...], tuple[Histogram, Counter | None]] = {}

    def observe(self, key: tuple[Any, ...], amount: float) -> None:
        slot = self._pending.get(key)
        if slot is None:
            slot = self._pending[key] = [0.0] * (len(self._bounds) + 2)
        slot[0] += 1
        slot[1] += amount
        slot[bisect_left(self._bounds, amount) + 2] += 1

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for key, slot in pending.items():
            histogram, counter = self._children.get(key) or self._child(key)
            histogram._sum.inc(slot[1])
            for bucket, count in zip(histogram._buckets, slot[2:], strict=True):
                if count:
                    bucket.inc(count)
            if counter is not None:
                counter._value.inc(slot[0])

    def _child(self, key: tuple[Any, ...]) -> tuple[Histogram, Counter | None]:
        labels = [str(part) for part in key]
        histogram = self.histogram.labels(*labels[: self._labels])
        counter = self.counter.labels(*labels) if self.counter is not None else None
        self._children[key] = (histogram, counter)
        return histogram, counter


FLUSH_INTERVAL = 0.25
"""With several workers, the longest a request's figures wait in a worker before its file has
them (the time a scrape answered by another worker may be behind)."""


class RequestPath:
    """What the metrics record on a request's path: each HTTP response and each Redis call.

    ``Histogram.observe`` takes a lock for the sum and another for the bucket, and with several
    workers writes a memory-mapped file for each (behind a ``getpid`` system call); with the
    request counter and a middleware layer of its own, that was a tenth of a cached read's
    instructions (``bench/profile_metrics.py``, under callgrind). Here an observation is a few
    list increments. They reach prometheus_client in bulk: before this process answers a scrape
    and when the service stops, so a single process's scrape is exact; and with several
    workers, whose scrapes any worker may answer, at most :data:`FLUSH_INTERVAL` seconds after
    they were made, each series written once per flush whatever the traffic.

    One per app: only the app's event loop uses it, so nothing here needs a lock.
    """

    def __init__(self) -> None:
        self.http = Observations(HTTP_DURATION, HTTP_REQUESTS)
        self.redis = Observations(REDIS_DURATION)
        self._timed = bool(os.environ.get(MULTIPROC_ENV))
        self._timer: asyncio.TimerHandle | None = None

    def response(self, scope: Scope, status: int, started: float) -> None:
        """A :class:`~.logs.ResponseObserver`: the outermost middleware reports here, so the
        metrics add no layer of their own to a request."""
        method = scope["method"]
        route = getattr(scope.get("route"), "path", UNMATCHED)
        key = (route, method if method in _METHODS else "other", status)
        self.http.observe(key, time.perf_counter() - started)
        if self._timed and self._timer is None:
            self._flush_later()

    def redis_call(self, call: Call, seconds: float) -> None:
        self.redis.observe((call_name(call),), seconds)
        if self._timed and self._timer is None:
            self._flush_later()

    def _flush_later(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a blocking caller: its figures wait for the scrape or the end
            return
        self._timer = loop.call_later(FLUSH_INTERVAL, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.http.flush()
        self.redis.flush()


class HubMetrics:
    """Counts one hub's sessions and Redis calls and keeps its per-worker gauges."""

    def __init__(self, hub: AsyncSessionHub, monitor: Monitor, path: RequestPath) -> None:
        self.hub = hub
        self.monitor = monitor
        self.path = path
        self._evictions = hub.manager.core.memory.evictions
        self._expired = 0
        # Every known label value from the start: a dashboard shows 0, not "no data".
        for reason in (*get_args(DestroyReason), "expired"):
            DESTROYED.labels(reason)
        for direction in ("entered", "left"):
            TRANSITIONS.labels(direction)
        self.worker_gauges()

    # -- SessionObserver -----------------------------------------------------------------------

    def created(self, session: Session) -> None:
        CREATED.inc()

    def destroyed(self, storage_id: str, reason: str, created_ms: int | None) -> None:
        DESTROYED.labels(destroy_reason(reason)).inc()
        if created_ms is not None:
            DURATION.observe(max(0.0, time.time() - created_ms / 1000))

    # -- CoreObserver --------------------------------------------------------------------------

    def redis_call(self, call: Call, started: float, ended: float, error: Exception | None) -> None:
        self.path.redis_call(call, ended - started)

    def mode_changed(self, degraded: bool) -> None:
        TRANSITIONS.labels("entered" if degraded else "left").inc()
        self._mode()

    # -- gauges --------------------------------------------------------------------------------

    def _mode(self) -> None:
        core = self.hub.manager.core
        REDIS_UP.set(1 if core.redis_up else 0)
        DEGRADED.set(1 if core.degraded else 0)

    def flush(self) -> None:
        """Bring this worker's figures up to date: before a scrape, and when it stops."""
        self.path.flush()
        self.worker_gauges()

    def worker_gauges(self) -> None:
        """Set what this worker holds; no I/O, so also done at each scrape."""
        self._mode()
        core = self.hub.manager.core
        MEMORY_SESSIONS.set(len(core.memory))
        _MEMORY_ONLY.labels("memory").set(core.memory_only_sessions(core.clock()))
        evictions = core.memory.evictions
        EVICTIONS.inc(evictions - self._evictions)
        self._evictions = evictions
        if core.redis_ops is not None:
            expired = core.redis_ops.expired
            if expired > self._expired:
                DESTROYED.labels("expired").inc(expired - self._expired)
            self._expired = expired

    def shared(self) -> Iterator[Metric]:
        """What every worker would say alike, from this worker's last background read."""
        monitor = self.monitor
        values: dict[str, object] = {"online_users": monitor.online_users}
        values.update(monitor.redis_info or {})
        for name, text, key in _SHARED:
            value = values.get(key)
            if isinstance(value, int):
                yield GaugeMetricFamily(name, text, value=value)
        if monitor.redis_sessions is not None:
            redis = GaugeMetricFamily(SESSIONS_ACTIVE, "", labels=["store"])
            redis.add_metric(["redis"], monitor.redis_sessions)
            yield redis


class _Exposition(Collector):
    """The process's (or every worker's) metrics with the shared figures merged in: one family
    per name, as the text format requires."""

    def __init__(self, base: Iterable[Metric] | Callable[[], Iterable[Metric]], hub: HubMetrics):
        self.base = base
        self.hub = hub

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for family in self.base() if callable(self.base) else self.base:
            families[family.name] = family
        for extra in self.hub.shared():
            known = families.get(extra.name)
            if known is None:
                families[extra.name] = extra
            else:
                known.samples += extra.samples
        return list(families.values())


def exposition(hub: HubMetrics) -> bytes:
    """The text a scrape gets."""
    hub.flush()
    path = os.environ.get(MULTIPROC_ENV)
    registry = CollectorRegistry(auto_describe=False)
    if path:
        collector = multiprocess.MultiProcessCollector(CollectorRegistry(), path)  # type: ignore[no-untyped-call]
        base: Any = collector.collect
    else:
        base = REGISTRY.collect
    registry.register(_Exposition(base, hub))
    return generate_latest(registry)


async def metrics_endpoint(request: Request) -> Response:
    settings = request.app.state.settings
    if settings.metrics.require_auth:
        require_admin(request, [k.get_secret_value() for k in settings.admin.api_keys])
    body = exposition(request.app.state.metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def process_ended(hub: HubMetrics) -> None:
    """Write what this worker still holds, then drop its live gauges from the multiprocess
    directory (it is shutting down)."""
    hub.flush()
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class PrometheusCounts(Counts):
    """The routes' counts, as Prometheus counters."""

    def __init__(self) -> None:
        self._logins = {result: LOGINS.labels(result) for result in get_args(LoginResult)}

    def login(self, result: LoginResult) -> None:
        self._logins[result].inc()

    def sent(self, messages: int) -> None:
        MESSAGES_SENT.inc(messages)

    def delivered(self) -> None:
        MESSAGES_DELIVERED.inc()
