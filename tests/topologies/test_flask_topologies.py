"""Flask and Quart apps configured for Sentinel or Cluster, through SessionHub's settings, through
Flask-Session's ``SESSION_REDIS`` (a client from ``Sentinel.master_for`` or a ``RedisCluster``)
or both: sessions live on that topology, and Flask-Session's own sessions are carried over from
it; nothing goes to a server the app did not name."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import flask_session
import msgpack  # type: ignore[import-untyped]
import pytest
import redis
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from starlette.testclient import TestClient

from redis_server import (
    SENTINEL_MASTER,
    ClusterGroup,
    RedisServer,
    SentinelServer,
    TlsRedisServer,
    TlsSentinelServer,
)
from sessionhub.config import host_port
from sessionhub.exceptions import ConfigError
from sessionhub.integrations.flask import FlaskSessionHub, flask_settings
from tls_certs import Certs, make_certs
from topology_fixtures import Topology

SECRET = "flask-secret-key-0123456789"
TOPOLOGIES = ["sentinel", "cluster"]


def session_redis(topology: Topology) -> Any:
    """A blocking redis-py client of ``topology`` as an app gives Flask-Session one."""
    if topology.name == "sentinel":
        sentinels = [host_port(a) for a in topology.redis["SENTINELS"]]
        return redis.sentinel.Sentinel(sentinels).master_for(SENTINEL_MASTER)
    nodes = [redis.cluster.ClusterNode(*host_port(a)) for a in topology.redis["CLUSTER_NODES"]]
    return redis.cluster.RedisCluster(startup_nodes=nodes)


def async_session_redis(topology: Topology) -> Any:
    """An asyncio redis-py client of ``topology``, as a Quart app gives one."""
    if topology.name == "sentinel":
        sentinels = [host_port(a) for a in topology.redis["SENTINELS"]]
        return redis.asyncio.sentinel.Sentinel(sentinels).master_for(SENTINEL_MASTER)
    nodes = [
        redis.asyncio.cluster.ClusterNode(*host_port(a)) for a in topology.redis["CLUSTER_NODES"]
    ]
    return redis.asyncio.cluster.RedisCluster(startup_nodes=nodes)


def visits_app(config: dict[str, Any]) -> flask.Flask:
    """A Flask app counting visits in its session."""
    app = flask.Flask("t")
    app.config.update(SECRET_KEY=SECRET, SESSION_TYPE="redis", **config)

    @app.get("/visits")
    def visits() -> Any:
        flask.session["visits"] = flask.session.get("visits", 0) + 1
        return {"visits": flask.session["visits"]}

    return app


def flask_session_cookie(topology: Topology, client: Any) -> str:
    """The cookie of a session with two visits that Flask-Session 0.8 keeps on ``topology``."""
    if topology.name == "cluster":
        # Flask-Session 0.8 takes only a redis.Redis (given a RedisCluster, it quietly makes a
        # client of localhost): its data is written here as it writes it, msgpack under its
        # prefix, the cookie being the bare id (no signer).
        storage_id = secrets.token_urlsafe(32)
        client.set("session:" + storage_id, msgpack.packb({"visits": 2}), ex=3600)
        return storage_id
    assert isinstance(client, redis.Redis)  # or Flask-Session would use localhost instead
    old_app = visits_app({"SESSION_REDIS": client})
    flask_session.Session(old_app)
    old = old_app.test_client()
    old.get("/visits")
    assert old.get("/visits").json == {"visits": 2}
    return str(old.get_cookie("session").value)


@pytest.fixture
def client_of(topology: Topology) -> Iterator[Any]:
    """The topology's blocking client, closed after the test."""
    client = session_redis(topology)
    try:
        yield client
    finally:
        client.close()


def _config(source: str, topology: Topology, client: Any) -> dict[str, Any]:
    """Where an app names Redis: in SESSIONHUB, in SESSION_REDIS or in both."""
    config: dict[str, Any] = {"SESSION_MIGRATE_FROM_FLASK_SESSION": True}
    if source in ("SESSIONHUB", "both"):
        config["SESSIONHUB"] = {"REDIS": dict(topology.redis)}
    if source in ("SESSION_REDIS", "both"):
        config["SESSION_REDIS"] = client
    return config


@pytest.mark.parametrize("source", ["SESSION_REDIS", "SESSIONHUB", "both"])
@pytest.mark.parametrize("topology", TOPOLOGIES, indirect=True)
def test_flask_app_on_the_topology_carries_flask_session_over(
    topology: Topology, client_of: Any, source: str
) -> None:
    """Whichever way the app names Sentinel or Cluster, SessionHub stores its sessions there,
    and a session Flask-Session kept there is carried over once, read and removed there."""
    old_cookie = flask_session_cookie(topology, client_of)
    assert client_of.exists("session:" + old_cookie) == 1

    config = _config(source, topology, client_of)
    # Before anything connects: the settings name the topology, not a default server.
    assert flask_settings(visits_app(config).config).redis.mode == topology.name
    app = visits_app(config)
    FlaskSessionHub(app)
    try:
        client = app.test_client()
        client.set_cookie("session", old_cookie)
        assert client.get("/visits").json == {"visits": 3}
        assert client.get_cookie("session").value != old_cookie
        assert client.get("/visits").json == {"visits": 4}
        assert client_of.exists("session:" + old_cookie) == 0
        hub = app.session_interface.hub
        assert hub.manager.core.mode == "redis", hub.manager.core.last_error
        assert hub.stats()["total_sessions"] == 1
        assert len(topology.keys(hub.settings.session.key_prefix + "*")) >= 1
    finally:
        FlaskSessionHub().close(app)


@pytest.mark.parametrize("topology", TOPOLOGIES, indirect=True)
def test_quart_app_on_an_asyncio_session_redis(topology: Topology) -> None:
    """A Quart app whose SESSION_REDIS is an asyncio client of Sentinel or Cluster keeps its
    sessions on that topology."""
    import quart

    from sessionhub.integrations.quart import QuartSessionHub

    app = quart.Quart("t")
    app.config.update(SECRET_KEY=SECRET, SESSION_REDIS=async_session_redis(topology))
    assert flask_settings(app.config, quart.Quart.default_config).redis.mode == topology.name
    QuartSessionHub(app)

    @app.get("/")
    async def home() -> Any:
        quart.session["n"] = quart.session.get("n", 0) + 1
        return {"n": quart.session["n"]}

    with TestClient(app) as client:
        assert client.get("/").json() == {"n": 1}
        assert client.get("/").json() == {"n": 2}
    assert len(topology.keys("session:*")) >= 1


@pytest.mark.parametrize("topology", ["sentinel"], indirect=True)
def test_a_topology_that_disagrees_with_session_redis_is_refused(
    topology: Topology, client_of: Any
) -> None:
    """SESSIONHUB says MODE: cluster and SESSION_REDIS is a Sentinel client: a startup error
    naming both, not a client of one or the other picked silently."""
    with pytest.raises(
        ConfigError, match=r"REDIS\.MODE is cluster but SESSION_REDIS is a sentinel"
    ):
        flask_settings({"SESSIONHUB": {"REDIS": {"MODE": "cluster"}}, "SESSION_REDIS": client_of})


def test_session_redis_of_another_kind_is_refused() -> None:
    """A SESSION_REDIS that is no redis-py client is a startup error, not a silent localhost."""
    with pytest.raises(ConfigError, match=r"SESSION_REDIS is a builtins\.object"):
        flask_settings({"SESSION_REDIS": object()})


def test_an_invalid_combination_of_keys_is_one_line() -> None:
    """SESSIONHUB asks for Cluster without naming a node: a one-line ConfigError naming the key,
    not pydantic's multi-line ValidationError."""
    with pytest.raises(ConfigError, match=r"CLUSTER_NODES") as caught:
        flask_settings({"SESSIONHUB": {"REDIS": {"MODE": "cluster"}}})
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("where", ["server", "cluster"])
def test_flask_app_on_a_tls_session_redis(
    where: str, certs: Certs, request: pytest.FixtureRequest
) -> None:
    """A SESSION_REDIS that speaks TLS, with a CA (and a client certificate for the cluster),
    gives SessionHub the same: sessions are stored over TLS, the certificates verified."""
    tls = {"ssl": True, "ssl_ca_certs": str(certs.ca_cert)}
    if where == "server":
        server: TlsRedisServer = request.getfixturevalue("tls_server")
        client: Any = redis.Redis(host=server.host, port=server.port, **tls)
        masters: list[RedisServer] = [server]
    else:
        group: ClusterGroup = request.getfixturevalue("tls_cluster_group")
        tls |= {"ssl_certfile": str(certs.client_cert), "ssl_keyfile": str(certs.client_key)}
        nodes = [redis.cluster.ClusterNode(*host_port(a)) for a in group.startup_nodes]
        client = redis.cluster.RedisCluster(startup_nodes=nodes, **tls)
        masters = group.masters()
    for master in masters:
        master.client().flushall()
    _counts_visits_in_redis(client)


def _counts_visits_in_redis(client: Any) -> Any:
    """An app on ``client`` as SESSION_REDIS counts two visits, on Redis; the settings its hub
    read from the client."""
    app = visits_app({"SESSION_REDIS": client})
    FlaskSessionHub(app)
    try:
        browser = app.test_client()
        browser.get("/visits")
        assert browser.get("/visits").json == {"visits": 2}
        hub = app.session_interface.hub
        assert hub.manager.core.mode == "redis", hub.manager.core.last_error
        assert hub.stats()["total_sessions"] == 1
        return hub.settings
    finally:
        FlaskSessionHub().close(app)
        client.close()


@pytest.fixture(params=["sentinel plain, master TLS", "sentinel TLS, master plain"])
def one_side_tls(
    request: pytest.FixtureRequest, certs: Certs, pytestconfig: pytest.Config
) -> Iterator[tuple[RedisServer, SentinelServer]]:
    """A master and a sentinel watching it, only one of them speaking TLS to its clients."""
    option = pytestconfig.getoption("redis_server_bin")
    binary = str(option) if option else None
    files = {"cert": certs.server_cert, "key": certs.server_key, "ca": certs.ca_cert}
    master: RedisServer
    watcher: SentinelServer
    if request.param == "sentinel plain, master TLS":
        master = TlsRedisServer(binary=binary, **files).start()
        # Plain to its clients, TLS to the master it watches.
        to_master = ("--tls-replication", "yes", "--tls-cert-file", str(certs.server_cert))
        to_master += ("--tls-key-file", str(certs.server_key), "--tls-ca-cert-file")
        to_master += (str(certs.ca_cert),)
        monitor = f"sentinel monitor {SENTINEL_MASTER} {master.host} {master.port} 1\n"
        watcher = SentinelServer(master.port, binary=binary, config=monitor, extra_args=to_master)
    else:
        master = RedisServer(binary=binary).start()
        monitor = f"sentinel monitor {SENTINEL_MASTER} {master.host} {master.port} 1\n"
        watcher = TlsSentinelServer(master.port, binary=binary, config=monitor, **files)
    try:
        yield master, watcher.start()
    finally:
        watcher.close()
        master.close()


def test_flask_app_on_a_sentinel_session_redis_with_tls_on_one_side(
    one_side_tls: tuple[RedisServer, SentinelServer], certs: Certs
) -> None:
    """A SESSION_REDIS from Sentinel whose sentinels and master differ in TLS (its
    sentinel_kwargs against its own options) gives SessionHub the same, SENTINEL_TLS apart
    from TLS: sessions are stored in the master, the certificates verified."""
    master, watcher = one_side_tls
    tls = {"ssl": True, "ssl_ca_certs": str(certs.ca_cert)}
    master_tls = isinstance(master, TlsRedisServer)
    sentinel_tls = isinstance(watcher, TlsSentinelServer)
    manager = redis.sentinel.Sentinel(
        [(watcher.host, watcher.port)],
        sentinel_kwargs=tls if sentinel_tls else {},
        **(tls if master_tls else {}),
    )
    rs = _counts_visits_in_redis(manager.master_for(SENTINEL_MASTER)).redis
    assert (rs.uses_tls, rs.sentinel_uses_tls) == (master_tls, sentinel_tls)
    assert master.client().keys("session:*")


@pytest.mark.parametrize("sentinels_ca", ["other", "system"])
def test_a_sentinel_session_redis_with_other_tls_files_for_its_sentinels_is_refused(
    certs: Certs, tmp_path: Path, sentinels_ca: str
) -> None:
    """Sentinels and master verified against different CAs (another file, or the system's trust
    store against a file) cannot be said with SessionHub's one TLS_CA_CERT: a one-line startup
    error naming the key, not a guess."""
    sentinel_kwargs: dict[str, Any] = {"ssl": True}
    if sentinels_ca == "other":
        sentinel_kwargs["ssl_ca_certs"] = str(make_certs(tmp_path, name="Sentinels' CA").ca_cert)
    manager = redis.sentinel.Sentinel(
        [("127.0.0.1", 1)],
        sentinel_kwargs=sentinel_kwargs,
        ssl=True,
        ssl_ca_certs=str(certs.ca_cert),
    )
    with pytest.raises(ConfigError, match=r"different TLS_CA_CERT files") as caught:
        flask_settings({"SESSION_REDIS": manager.master_for(SENTINEL_MASTER)})
    assert "\n" not in str(caught.value)
