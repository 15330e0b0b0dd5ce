"""A configuration mistake is not an outage: a wrong password, an ACL without a command
SessionHub needs, a TLS CA that did not sign the server's certificate and an unknown Sentinel
master name stop ``sessionhub serve`` with one line (exit 2), and a hub names them in health;
one that appears after start shows in health as what it is."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from starlette.testclient import TestClient

from helpers import hub_factory, login, serve_command, service_settings, wait_for
from redis_server import ClusterGroup, RedisServer, SentinelGroup, TlsRedisServer, free_port
from sessionhub.config import Settings
from sessionhub.exceptions import RedisConfigError
from sessionhub.stores.redis import NO_PERMISSION, TLS_FAILED, UNKNOWN_MASTER, WRONG_CREDENTIALS
from test_cli import SECRET, one_line_error, run_cli
from tls_certs import Certs, make_certs
from topology_fixtures import ACL_PASSWORD, ACL_USER, documented_acl_line

RIGHT_PASSWORD = "right-password-0123"
MISTAKES = (
    "wrong password",
    "missing permission",
    "wrong CA",
    "wrong CA on cluster",
    "unknown master",
)
FAULTS = {
    "wrong password": WRONG_CREDENTIALS,
    "missing permission": NO_PERMISSION,
    "wrong CA": TLS_FAILED,
    "wrong CA on cluster": TLS_FAILED,
    "unknown master": UNKNOWN_MASTER,
}


def _address(server: RedisServer) -> dict[str, Any]:
    # Not URL: a URL wins over USERNAME and PASSWORD (CONFIG.md).
    return {"HOST": server.host, "PORT": server.port}


def without_evalsha() -> str:
    """docs/DEPLOYMENT.md's ACL line, less the command every request runs."""
    line = documented_acl_line()
    assert " +evalsha " in line
    return line.replace(" +evalsha ", " ")


@pytest.fixture
def password_server(pytestconfig: pytest.Config) -> Iterator[RedisServer]:
    """A private redis-server with ``requirepass``."""
    binary = pytestconfig.getoption("redis_server_bin")
    server = RedisServer(binary=binary or None, password=RIGHT_PASSWORD)
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture(params=MISTAKES)
def mistake(
    request: pytest.FixtureRequest,
    make_redis_server: Callable[..., RedisServer],
    tmp_path: Path,
) -> tuple[str, dict[str, Any]]:
    """A REDIS section with one mistake in it, and the mistake's name."""
    name: str = request.param
    if name == "wrong password":
        server = request.getfixturevalue("password_server")
        return name, {**_address(server), "PASSWORD": "not-the-password"}
    if name == "missing permission":
        server = make_redis_server()
        server.client().execute_command(*without_evalsha().split())
        return name, {**_address(server), "USERNAME": ACL_USER, "PASSWORD": ACL_PASSWORD}
    if name == "wrong CA":
        tls: TlsRedisServer = request.getfixturevalue("tls_server")
        stranger = make_certs(tmp_path, name="Some other CA")
        return name, {"URL": tls.url, "TLS_CA_CERT": str(stranger.ca_cert)}
    if name == "wrong CA on cluster":
        cluster: ClusterGroup = request.getfixturevalue("tls_cluster_group")
        certs: Certs = request.getfixturevalue("certs")
        stranger = make_certs(tmp_path, name="Some other CA")
        return name, {
            "URL": None,
            "MODE": "cluster",
            "CLUSTER_NODES": cluster.startup_nodes,
            "TLS": True,
            "TLS_CA_CERT": str(stranger.ca_cert),
            # The client certificate the nodes want: the CA is the only mistake.
            "TLS_CERT": str(certs.client_cert),
            "TLS_KEY": str(certs.client_key),
        }
    group: SentinelGroup = request.getfixturevalue("sentinel_group")
    return name, {
        "URL": None,
        "MODE": "sentinel",
        "SENTINELS": group.sentinel_addresses,
        "SENTINEL_MASTER": "no-such-master",
    }


def test_serve_refuses_to_start_with_one_line(
    mistake: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    """`sessionhub serve` on each mistake exits 2 with one line naming it, before serving."""
    name, section = mistake
    config = tmp_path / "config.yaml"
    redis_section = {"SOCKET_TIMEOUT": 1.0, "CONNECT_TIMEOUT": 1.0, **section}
    config.write_text(yaml.safe_dump({"SECRET_KEY": SECRET, "REDIS": redis_section}))
    result = run_cli("serve", "--config", str(config), "--port", str(free_port()), cwd=tmp_path)
    line = one_line_error(result, 2)
    assert FAULTS[name].message in line
    assert "Redis refuses the configuration" in line


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_hub_names_the_mistake_in_health(mistake: tuple[str, dict[str, Any]], kind: str) -> None:
    """A library hub on each mistake keeps working from memory and says in health that
    Redis refuses the configuration, naming how, rather than reporting an outage."""
    name, section = mistake

    def settings(**sections: dict[str, Any]) -> Settings:
        return service_settings(None, session={"TYPE": "redis"}, redis=section, **sections)

    with hub_factory(kind, settings) as make:
        hub = make()
        _, cookie = hub.create("alice")
        assert hub.open(cookie) is not None
        health = hub.health()
        assert health["status"] == "misconfigured"
        assert health["message"].startswith(FAULTS[name].message)
        assert isinstance(hub.manager.core.config_error(), RedisConfigError)


@pytest.fixture
def service(make_client: Callable[..., TestClient]) -> Callable[..., TestClient]:
    """Factory of started HTTP services on a REDIS section, probing often."""

    def make(section: dict[str, Any]) -> TestClient:
        redis_section = {"PROBE_INTERVAL": 0.1, **section}
        return make_client(None, session={"TYPE": "redis"}, redis=redis_section)

    return make


def _health(client: TestClient) -> dict[str, Any]:
    data: dict[str, Any] = client.get("/api/health/redis").json()["data"]
    return data


def test_a_password_changed_after_start_shows_in_health(
    password_server: RedisServer, service: Callable[..., TestClient]
) -> None:
    """Redis's password changes under a running service: once its connections are redialled,
    health answers 503 `misconfigured`, `wrong credentials`, not a plain outage."""
    server = password_server
    client = service({**_address(server), "PASSWORD": RIGHT_PASSWORD})
    login(client)
    assert _health(client)["status"] == "healthy"
    admin = server.client()
    admin.config_set("requirepass", "a-new-password-4567")
    admin = server.client(password="a-new-password-4567")
    admin.client_kill_filter(_type="normal", skipme=True)
    client.get("/api/auth/me")
    wait_for(lambda: _health(client)["message"].startswith(WRONG_CREDENTIALS.message))
    response = client.get("/api/health/redis")
    assert response.status_code == 503
    assert response.json()["data"]["status"] == "misconfigured"


def test_a_permission_taken_after_start_shows_in_health(
    make_redis_server: Callable[..., RedisServer], service: Callable[..., TestClient]
) -> None:
    """The ACL user loses EVALSHA under a running service: the next request finds NOPERM and
    health names the missing permission; the probe keeps it named, it does not flap back."""
    server = make_redis_server()
    admin = server.client()
    admin.execute_command(*documented_acl_line().split())
    client = service({**_address(server), "USERNAME": ACL_USER, "PASSWORD": ACL_PASSWORD})
    login(client)
    admin.execute_command("ACL", "SETUSER", ACL_USER, "-evalsha")
    assert client.get("/api/auth/me").status_code == 200
    health = _health(client)
    assert health["status"] == "misconfigured"
    assert health["message"].startswith(NO_PERMISSION.message)
    probes = _calls_of_set(admin)  # each probe writes its key first
    wait_for(lambda: _calls_of_set(admin) >= probes + 2)
    assert _health(client)["message"].startswith(NO_PERMISSION.message)


def _calls_of_set(client: redis.Redis) -> int:
    stats = client.info("commandstats").get("cmdstat_set", {"calls": 0})
    return int(stats["calls"])


def _health_status(base: str) -> int | None:
    """The status of the service's Redis health, or ``None`` while it does not listen yet."""
    try:
        with urllib.request.urlopen(base + "/api/health/redis", timeout=5) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_serve_starts_while_its_cluster_is_down(
    unstarted_cluster: ClusterGroup, tmp_path: Path
) -> None:
    """A Redis Cluster that does not answer yet is an outage, not a mistake: `sessionhub serve`
    starts and serves from memory (health 503), then moves to the cluster once it is up."""
    config = tmp_path / "config.yaml"
    redis_section = {
        "MODE": "cluster",
        "CLUSTER_NODES": unstarted_cluster.startup_nodes,
        "PROBE_INTERVAL": 0.2,
        "SOCKET_TIMEOUT": 1.0,
        "CONNECT_TIMEOUT": 1.0,
    }
    config.write_text(yaml.safe_dump({"SECRET_KEY": SECRET, "REDIS": redis_section}))
    port = free_port()
    with (tmp_path / "serve.log").open("w") as log:
        proc = subprocess.Popen(
            serve_command(config, port, 1), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _health_status(base) is not None or proc.poll() is not None, 30)
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert _health_status(base) == 503
            unstarted_cluster.start()
            wait_for(lambda: _health_status(base) == 200, timeout=15)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
