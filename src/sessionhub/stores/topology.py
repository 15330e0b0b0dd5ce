"""The redis-py client a ``REDIS`` section describes, for each topology and with TLS.

* ``standalone``: one server from ``URL`` or ``HOST``/``PORT`` (what SessionHub always did).
* ``sentinel``: :meth:`redis.sentinel.Sentinel.master_for`. Its connections ask the sentinels for
  the master when they connect, and drop themselves when the server they reach answers
  ``READONLY`` (it was demoted), so the next attempt asks again: a replica is never written to.
* ``cluster``: :class:`redis.cluster.RedisCluster`, which keeps the slot map, sends each command
  to the master of its slot, follows ``MOVED`` / ``ASK`` and refreshes the map when it changes
  (the asyncio hub routes by that map to a pipeline per master: :mod:`.cluster`). The blocking
  one reads the map in its constructor, so SessionHub builds it on first use
  (:class:`LazyCluster`): a cluster that is down at start is an outage like any other.

Certificates are verified (the server's chain against ``TLS_CA_CERT`` and its host name) in every
mode; there is no switch to turn that off.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.asyncio.sentinel as aiosentinel
import redis.cluster
import redis.sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from ..config import RedisSettings, host_port
from .busy import CLUSTER_RESERVE
from .redis import UnknownMasterError

RETRY_BACKOFF_CAP = 0.05
RETRY_BACKOFF_BASE = 0.01
"""Retries are for a dropped connection, not a dead server: they must be short."""

SyncClient = redis.Redis | redis.cluster.RedisCluster
"""A blocking client, as an application gives one."""
AsyncClient = aioredis.Redis | aiocluster.RedisCluster


class LazyCluster:
    """A blocking :class:`redis.cluster.RedisCluster`, built by the first call that needs it.

    redis-py's blocking cluster client reads the slot map in its constructor, and fails there
    when no startup node answers; the asyncio one reads it on first use. Built on first use, a
    cluster down at start fails the calls that find it down (served from memory, like a
    standalone Redis that is down) until one finds it up, the probe's included; a mistake the
    constructor meets (TLS, credentials) is classified like any call's. Once built, the client
    refreshes its slot map itself and is kept.
    """

    def __init__(self, build: Callable[[], redis.cluster.RedisCluster]) -> None:
        self._build = build
        self._client: redis.cluster.RedisCluster | None = None
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def of(cls, client: redis.cluster.RedisCluster) -> LazyCluster:
        """``client``, built already (an application's)."""
        made = cls(lambda: client)
        made._client = client
        return made

    @property
    def built(self) -> redis.cluster.RedisCluster | None:
        """The client if it was built, else ``None`` (no I/O)."""
        return self._client

    def get(self) -> redis.cluster.RedisCluster:
        """The client, built now if it was not: raises what building it raised."""
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._closed:
                raise redis.ConnectionError("the Redis Cluster client was closed")
            if self._client is None:
                self._client = self._build()
            return self._client

    def close(self) -> None:
        """Close the client, if it was built; it is not built again."""
        with self._lock:
            self._closed = True
            if self._client is not None:
                self._client.close()


HeldSyncClient = redis.Redis | LazyCluster
"""A blocking client as SessionHub holds it: a cluster's built on first use."""


def held(client: SyncClient) -> HeldSyncClient:
    """``client`` as SessionHub holds it."""
    return LazyCluster.of(client) if isinstance(client, redis.cluster.RedisCluster) else client


def ready(client: HeldSyncClient) -> SyncClient:
    """The redis-py client behind ``client``; building a cluster's raises while it is down."""
    return client.get() if isinstance(client, LazyCluster) else client


def redis_client_kwargs(rs: RedisSettings) -> dict[str, Any]:
    """Client settings shared by the blocking and asyncio pools."""
    return {
        "socket_timeout": rs.socket_timeout,
        "socket_connect_timeout": rs.connect_timeout,
        "retry": Retry(ExponentialBackoff(RETRY_BACKOFF_CAP, RETRY_BACKOFF_BASE), rs.retries),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
        "max_connections": rs.max_connections,
        "decode_responses": True,
        "health_check_interval": 0,
    }


def tls_kwargs(rs: RedisSettings, *, sentinels: bool = False) -> dict[str, Any]:
    """redis-py's TLS options for the data nodes of ``rs``, or its ``sentinels`` (empty without
    TLS); verification always on. The certificate files serve both."""
    if not (rs.sentinel_uses_tls if sentinels else rs.uses_tls):
        return {}
    return {
        "ssl_ca_certs": rs.tls_ca_cert,
        "ssl_certfile": rs.tls_cert,
        "ssl_keyfile": rs.tls_key,
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
    }


def _auth(rs: RedisSettings) -> dict[str, Any]:
    password = rs.password.get_secret_value() if rs.password is not None else None
    return {"username": rs.username, "password": password}


def _standalone_url(rs: RedisSettings, *, masked: bool = False) -> str:
    url = rs.connection_url(masked=masked)
    if rs.tls and url.startswith("redis://"):
        url = "rediss://" + url.removeprefix("redis://")  # TLS: true wins over the URL's scheme
    return url


def _sentinel_options(rs: RedisSettings) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The sentinels' addresses and how to talk to them (their own credentials)."""
    password = rs.sentinel_password.get_secret_value() if rs.sentinel_password else None
    options: dict[str, Any] = {
        "socket_timeout": rs.socket_timeout,
        "socket_connect_timeout": rs.connect_timeout,
        "username": rs.sentinel_username,
        "password": password,
        "decode_responses": True,
    }
    if rs.sentinel_uses_tls:
        options |= {"ssl": True, **tls_kwargs(rs, sentinels=True)}
    return [host_port(a) for a in rs.sentinels], options


def _why_no_master(name: str, answers: list[Any]) -> Exception | None:
    """Why no sentinel gave the master ``name``, when it is a configuration mistake: a sentinel
    refused the credentials (redis-py files that under "no master found"), or every sentinel
    answered and none monitors ``name``. ``None`` when the master may merely be down."""
    refused = next((a for a in answers if isinstance(a, redis.AuthenticationError)), None)
    if refused is not None:
        return refused
    if answers and all(isinstance(a, dict) and name not in a for a in answers):
        return UnknownMasterError(f"no sentinel monitors a master named {name!r}")
    return None


class _Sentinel(redis.sentinel.Sentinel):
    """redis-py's Sentinel, telling a wrong master name or sentinel password from a master
    that is down (it reports all three as "no master found")."""

    def discover_master(self, service_name: str) -> Any:
        try:
            return super().discover_master(service_name)
        except redis.sentinel.MasterNotFoundError as exc:
            answers: list[Any] = []
            for sentinel in self.sentinels:
                try:
                    answers.append(sentinel.sentinel_masters())
                except redis.RedisError as error:
                    answers.append(error)
            mistake = _why_no_master(service_name, answers)
            if mistake is None:
                raise
            raise mistake from exc


async def _answer(pending: Awaitable[Any]) -> Any:
    try:
        return await pending
    except redis.RedisError as error:
        return error


class _AsyncSentinel(aiosentinel.Sentinel):
    """The asyncio mirror image of :class:`_Sentinel`."""

    async def discover_master(self, service_name: str) -> Any:
        try:
            return await super().discover_master(service_name)
        except aiosentinel.MasterNotFoundError as exc:
            answers = [await _answer(sentinel.sentinel_masters()) for sentinel in self.sentinels]
            mistake = _why_no_master(service_name, answers)
            if mistake is None:
                raise
            raise mistake from exc


def _data_node_options(rs: RedisSettings) -> dict[str, Any]:
    options = {**redis_client_kwargs(rs), **_auth(rs), **tls_kwargs(rs)}
    if rs.uses_tls:
        options["ssl"] = True
    return options


def _cluster_options(rs: RedisSettings) -> dict[str, Any]:
    options = _data_node_options(rs)
    # The cluster client retries a dropped node itself and refreshes its slot map on the way.
    options.pop("health_check_interval")
    # MAX_CONNECTIONS bounds the blocking hub's calls in flight (ClusterCalls); each node's pool
    # also lends connections outside them (the asyncio hub's calls use a connection of their own).
    options["max_connections"] = rs.max_connections + CLUSTER_RESERVE
    return options


def sync_client(rs: RedisSettings, *, decode_responses: bool = True) -> HeldSyncClient:
    """The blocking client for ``rs``'s topology (replies as bytes with ``decode_responses``
    false, for data SessionHub did not write); no I/O."""
    decoding = {"decode_responses": decode_responses}
    if rs.mode == "sentinel":
        sentinels, sentinel_options = _sentinel_options(rs)
        options = _data_node_options(rs) | {"db": rs.db} | decoding
        manager = _Sentinel(sentinels, sentinel_kwargs=sentinel_options, **options)
        master: redis.Redis = manager.master_for(rs.sentinel_master or "", redis_class=redis.Redis)
        return master
    if rs.mode == "cluster":
        options = _cluster_options(rs) | decoding
        nodes = [redis.cluster.ClusterNode(*host_port(a)) for a in rs.cluster_nodes]
        return LazyCluster(lambda: redis.cluster.RedisCluster(startup_nodes=nodes, **options))
    options = redis_client_kwargs(rs) | decoding
    return redis.Redis.from_url(_standalone_url(rs), **options, **tls_kwargs(rs))


def async_client(rs: RedisSettings) -> AsyncClient:
    """The asyncio client for ``rs``'s topology."""
    if rs.mode == "sentinel":
        sentinels, sentinel_options = _sentinel_options(rs)
        options = _data_node_options(rs) | {"db": rs.db}
        manager = _AsyncSentinel(sentinels, sentinel_kwargs=sentinel_options, **options)
        master: aioredis.Redis = manager.master_for(
            rs.sentinel_master or "", redis_class=aioredis.Redis
        )
        return master
    if rs.mode == "cluster":
        nodes = [aiocluster.ClusterNode(*host_port(a)) for a in rs.cluster_nodes]
        return aiocluster.RedisCluster(startup_nodes=nodes, **_cluster_options(rs))
    return aioredis.Redis.from_url(_standalone_url(rs), **redis_client_kwargs(rs), **tls_kwargs(rs))


def describe(rs: RedisSettings) -> str:
    """One line naming the topology and where it is, without secrets (logs, ``config check``)."""
    tls = " over TLS" if rs.uses_tls else ""
    if rs.mode == "sentinel":
        if rs.sentinel_uses_tls != rs.uses_tls:
            tls += f" (the sentinels {'over TLS' if rs.sentinel_uses_tls else 'without'})"
        return f"sentinel: master {rs.sentinel_master!r} of {', '.join(rs.sentinels)}{tls}"
    if rs.mode == "cluster":
        return f"cluster: startup nodes {', '.join(rs.cluster_nodes)}{tls}"
    return f"standalone: {_standalone_url(rs, masked=True)}"


def masters(client: HeldSyncClient | AsyncClient | None) -> list[str]:
    """The masters a keyspace-wide walk (``SCAN``) must visit one by one, as
    :attr:`~.base.CommandCall.node` names them: every master of a cluster, as the client knows
    them now; elsewhere the one server, ``""``."""
    cluster = client.get() if isinstance(client, LazyCluster) else client
    if isinstance(cluster, redis.cluster.RedisCluster | aiocluster.RedisCluster):
        names = sorted(str(node.name) for node in cluster.get_primaries())
        if not names:  # not connected yet: "no master" must not read as "nothing to visit"
            raise RedisClusterException("the cluster client knows no master yet")
        return names
    return [""]
