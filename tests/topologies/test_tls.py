"""TLS: SessionHub reaches a TLS-only Redis (alone, named by a TLS-only sentinel, or a cluster
of TLS-only nodes that want a client certificate) with a CA the test made, and refuses a server
whose certificate another CA signed, saying so."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis

from helpers import build_settings, hub_factory
from redis_server import (
    SENTINEL_MASTER,
    ClusterGroup,
    RedisServer,
    TlsRedisServer,
    TlsSentinelServer,
)
from sessionhub.config import Settings
from tls_certs import Certs, make_certs


def _stores_sessions_in(
    servers: Sequence[RedisServer], kind: str, settings: Settings, count: int = 1
) -> None:
    """A hub of ``kind`` on ``settings`` keeps ``count`` sessions in ``servers`` (each key on
    one of them: a cluster master answers MOVED for the others), on Redis, and counts them."""
    for server in servers:  # shared by the session's tests: the count starts from nothing
        server.client().flushall()
    with hub_factory(kind, lambda: settings) as make:
        hub = make()
        made = [hub.create(f"user{i}", data={"n": i}) for i in range(count)]
        for i, (_, cookie) in enumerate(made):
            assert dict(hub.open(cookie)) == {"n": i}
        assert hub.manager.core.mode == "redis", hub.manager.core.last_error
        keys = [hub.manager.core.redis_ops.keys.session(session.storage_id) for session, _ in made]
        found = 0
        for server in servers:
            client = server.client()
            for key in keys:
                with contextlib.suppress(redis.exceptions.MovedError):
                    found += client.exists(key)
            client.close()
        assert found == count
        assert hub.stats()["total_sessions"] == count


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("spelling", ["url", "flag"])
def test_sessions_over_tls_with_the_right_ca(
    tls_server: TlsRedisServer, certs: Certs, kind: str, spelling: str
) -> None:
    """With TLS_CA_CERT naming the CA, sessions are stored in the TLS-only Redis, whether TLS
    is asked for by a rediss:// URL or by TLS: true."""
    redis = {"TLS_CA_CERT": str(certs.ca_cert)}
    if spelling == "flag":
        redis |= {"URL": None, "HOST": "127.0.0.1", "PORT": tls_server.port, "TLS": True}

    _stores_sessions_in([tls_server], kind, build_settings(tls_server.url, redis=redis))


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_server_signed_by_another_ca_is_refused_with_a_clear_error(
    tls_server: TlsRedisServer, tmp_path: Path, kind: str
) -> None:
    """A CA that did not sign the server's certificate: nothing is sent to that server, and
    the reason (certificate verification) is what health reports."""
    stranger = make_certs(tmp_path, name="Some other CA")
    redis = {"TLS_CA_CERT": str(stranger.ca_cert)}

    def settings(**sections: dict[str, object]) -> object:
        return build_settings(tls_server.url, redis=redis, **sections)

    with hub_factory(kind, settings) as make:
        hub = make()
        hub.create("alice")
        assert hub.manager.core.mode == "degraded"
        assert "certificate verify failed" in (hub.health()["last_error"] or "")


@pytest.fixture
def tls_sentinel(
    certs: Certs, pytestconfig: pytest.Config
) -> Iterator[tuple[TlsRedisServer, TlsSentinelServer]]:
    """A TLS-only master and a TLS-only sentinel watching it over TLS."""
    option = pytestconfig.getoption("redis_server_bin")
    tls = {"cert": certs.server_cert, "key": certs.server_key, "ca": certs.ca_cert}
    master = TlsRedisServer(binary=str(option) if option else None, **tls).start()
    watcher = TlsSentinelServer(
        master.port,
        binary=master.binary,
        config=f"sentinel monitor {SENTINEL_MASTER} {master.host} {master.port} 1\n"
        "tls-replication yes\n",
        **tls,
    )
    try:
        yield master, watcher.start()
    finally:
        watcher.close()
        master.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_sessions_over_tls_on_sentinel(
    tls_sentinel: tuple[TlsRedisServer, TlsSentinelServer], certs: Certs, kind: str
) -> None:
    """With TLS: true on Sentinel, the sentinels are asked over TLS and sessions are stored in
    the TLS-only master they name."""
    master, watcher = tls_sentinel
    redis = {
        "MODE": "sentinel",
        "SENTINELS": [f"{watcher.host}:{watcher.port}"],
        "SENTINEL_MASTER": SENTINEL_MASTER,
        "TLS": True,
        "TLS_CA_CERT": str(certs.ca_cert),
    }

    _stores_sessions_in(
        [master], kind, build_settings(None, redis=redis, session={"TYPE": "redis"})
    )


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_sessions_over_tls_on_cluster(
    tls_cluster_group: ClusterGroup, certs: Certs, kind: str
) -> None:
    """With TLS: true on Cluster, the hub reaches every master over TLS with the client
    certificate the nodes require: sessions land on the masters owning their slots, and the
    global count, summed over every master, is right."""
    redis = {
        "MODE": "cluster",
        "CLUSTER_NODES": tls_cluster_group.startup_nodes,
        "TLS": True,
        "TLS_CA_CERT": str(certs.ca_cert),
        "TLS_CERT": str(certs.client_cert),
        "TLS_KEY": str(certs.client_key),
    }
    settings = build_settings(None, redis=redis, session={"TYPE": "redis"})

    _stores_sessions_in(tls_cluster_group.masters(), kind, settings, count=30)
