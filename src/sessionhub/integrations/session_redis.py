"""Flask-Session's ``SESSION_REDIS``: the ``REDIS`` settings that reach what a redis-py client
reaches, whatever its topology.

* a client of one server (``redis.Redis(...)``, ``from_url``): ``URL``;
* a client from ``Sentinel(...).master_for(name)``: ``MODE: sentinel`` with its sentinels, the
  master's name, both sets of credentials and, when the sentinels and the master differ in TLS
  (``sentinel_kwargs`` against the client's own), ``SENTINEL_TLS``;
* a ``RedisCluster``: ``MODE: cluster`` with the nodes it knows as startup nodes.

Blocking and asyncio clients alike (Quart configures itself from the same keys). TLS comes along
with its certificate files; SessionHub always verifies the server's certificate. A client of any
other kind is a startup error: reading nothing from it would send SessionHub to
``localhost:6379`` without a word.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.asyncio.connection as aioconnection
import redis.asyncio.sentinel as aiosentinel
import redis.cluster
import redis.connection
import redis.sentinel

from ..exceptions import ConfigError

_PLAIN = (redis.Redis, aioredis.Redis)
_CLUSTERS = (redis.cluster.RedisCluster, aiocluster.RedisCluster)
_SENTINEL_POOLS = (redis.sentinel.SentinelConnectionPool, aiosentinel.SentinelConnectionPool)
_TLS_CONNECTIONS = (redis.connection.SSLConnection, aioconnection.SSLConnection)

WHERE_KEYS = frozenset({"URL", "HOST", "PORT", "SENTINELS", "SENTINEL_MASTER", "CLUSTER_NODES"})
"""``REDIS`` keys that say where Redis is: an application that sets one in its SessionHub
settings has said where, and ``SESSION_REDIS`` is not read for it. (``MODE`` alone does not:
``SESSION_REDIS`` may say where the sentinels or the nodes are.)"""


def is_client(value: object) -> bool:
    """Whether ``value`` is a redis-py client this module can read."""
    return isinstance(value, _PLAIN + _CLUSTERS)


def redis_section(client: object) -> dict[str, Any]:
    """The ``REDIS`` settings (UPPERCASE keys) that reach what ``client`` reaches."""
    if isinstance(client, _CLUSTERS):
        manager: Any = client.nodes_manager
        kw = manager.connection_kwargs
        return {
            "MODE": "cluster",
            "CLUSTER_NODES": list(manager.startup_nodes),
            **_credentials(kw, "USERNAME", "PASSWORD"),
            **_tls(kw, kw.get("connection_class")),
        }
    if not isinstance(client, _PLAIN):
        raise ConfigError(
            f"SESSION_REDIS is a {type(client).__module__}.{type(client).__qualname__}: "
            "SessionHub reads a redis-py client (redis.Redis, Sentinel(...).master_for(name) "
            "or RedisCluster, blocking or asyncio); give one, or set SESSIONHUB's REDIS section"
        )
    pool: Any = client.connection_pool
    kw = pool.connection_kwargs
    tls = _tls(kw, pool.connection_class)
    if isinstance(pool, _SENTINEL_POOLS):
        return _sentinel_section(pool, tls)
    return {"URL": _url(kw, bool(tls)), **tls}


def _sentinel_section(pool: Any, tls: dict[str, Any]) -> dict[str, Any]:
    manager = pool.sentinel_manager
    kw = pool.connection_kwargs
    sentinel_tls = _tls(manager.sentinel_kwargs, None)
    # A file on one side only differs too: the one setting would give it to the other side.
    files = (tls.keys() | sentinel_tls.keys()) - {"TLS"} if tls and sentinel_tls else set()
    differ = sorted(key for key in files if tls.get(key) != sentinel_tls.get(key))
    if differ:
        raise ConfigError(
            f"SESSION_REDIS reaches the sentinels and the master with different {', '.join(differ)}"
            " files; SessionHub's REDIS.TLS_CA_CERT / TLS_CERT / TLS_KEY serve both: give "
            "sentinel_kwargs the master's files, or set SESSIONHUB's REDIS section"
        )
    sentinels = [s.connection_pool.connection_kwargs for s in manager.sentinels]
    section = {
        "MODE": "sentinel",
        "SENTINELS": [f"{s['host']}:{int(s['port'])}" for s in sentinels],
        "SENTINEL_MASTER": pool.service_name,
        "DB": int(kw.get("db") or 0),
        **_credentials(kw, "USERNAME", "PASSWORD"),
        **_credentials(manager.sentinel_kwargs, "SENTINEL_USERNAME", "SENTINEL_PASSWORD"),
        **sentinel_tls,
        **tls,
    }
    section.pop("TLS", None)
    if tls:
        section["TLS"] = True
    if bool(sentinel_tls) != bool(tls):
        section["SENTINEL_TLS"] = bool(sentinel_tls)
    return section


def _credentials(kw: dict[str, Any], username: str, password: str) -> dict[str, Any]:
    found = {username: kw.get("username"), password: kw.get("password")}
    return {key: value for key, value in found.items() if value is not None}


def _tls(kw: dict[str, Any], connection_class: Any) -> dict[str, Any]:
    """``TLS: true`` and the certificate files, if the client's connections are TLS ones
    (a TLS connection class, or ``ssl=True`` as the blocking cluster client keeps it)."""
    tls_class = isinstance(connection_class, type) and issubclass(
        connection_class, _TLS_CONNECTIONS
    )
    if not (tls_class or kw.get("ssl") is True):
        return {}
    files = {"TLS_CA_CERT": "ssl_ca_certs", "TLS_CERT": "ssl_certfile", "TLS_KEY": "ssl_keyfile"}
    return {"TLS": True} | {key: kw[name] for key, name in files.items() if kw.get(name)}


def _url(kw: dict[str, Any], tls: bool) -> str:
    """A URL for the one server a client's connection settings ``kw`` name."""
    db = int(kw.get("db") or 0)
    if kw.get("path"):
        return f"unix://{kw['path']}?db={db}"
    auth = ""
    if kw.get("username") or kw.get("password"):
        auth = quote(str(kw.get("username") or ""), safe="")
        if kw.get("password"):
            auth += ":" + quote(str(kw["password"]), safe="")
        auth += "@"
    scheme = "rediss" if tls else "redis"
    host = str(kw.get("host") or "localhost")
    return f"{scheme}://{auth}{host}:{int(kw.get('port') or 6379)}/{db}"
