"""Redis topologies for the tests: the session's standalone server, a master with a replica
watched by three sentinels, and a three-master Redis Cluster with a replica each.

The sentinel group and the cluster start once per test session, the first time a test asks for
them, on free loopback ports in temp dirs, and are torn down at the end. The fixtures are
imported by the top conftest, so the service and adapter suites run over the topologies too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.cluster

from helpers import build_settings, every_string_in_redis
from redis_server import (
    SENTINEL_MASTER,
    ClusterGroup,
    RedisServer,
    SentinelGroup,
    TlsFiles,
    TlsRedisServer,
)
from sessionhub.config import Settings, host_port
from tls_certs import Certs, make_certs

TOPOLOGIES = ("standalone", "sentinel", "cluster")
DEPLOYMENT = Path(__file__).resolve().parents[1] / "docs" / "DEPLOYMENT.md"
ACL_USER = "sessionhub"
ACL_PASSWORD = "acl-test-password-0123"


def documented_acl_line() -> str:
    """The ``ACL SETUSER`` line docs/DEPLOYMENT.md gives, with the test's password."""
    text = DEPLOYMENT.read_text(encoding="utf-8")
    line = next(row for row in text.splitlines() if row.startswith("ACL SETUSER sessionhub "))
    return line.replace(">CHANGE-ME", f">{ACL_PASSWORD}")


@dataclass
class Topology:
    """One running topology: the REDIS section that reaches it and how to inspect it."""

    name: str
    redis: dict[str, Any]
    flush: Callable[[], None]
    masters: Callable[[], list[RedisServer]]
    data_nodes: list[RedisServer] = field(default_factory=list)

    def settings(self, **sections: dict[str, Any]) -> Settings:
        """Test settings on this topology, ``sections`` merged over them."""
        merged = dict(sections)
        merged["redis"] = {**self.redis, **sections.get("redis", {})}
        merged["session"] = {"TYPE": "redis", **sections.get("session", {})}
        return build_settings(None, **merged)

    def create_acl_user(self, line: str) -> None:
        """Run ``line`` (an ``ACL SETUSER``) on every data node: ACLs are not replicated."""
        for node in self.data_nodes:
            if node.is_running:
                client = node.client(decode_responses=True)
                try:
                    client.execute_command(*line.split())
                finally:
                    client.close()

    def clients(self) -> list[redis.Redis]:
        """A plain client per master (for looking at what SessionHub stored)."""
        return [m.client(decode_responses=True) for m in self.masters()]

    def keys(self, pattern: str = "*") -> list[bytes]:
        """Every key matching ``pattern`` on every master, as bytes."""
        found: list[bytes] = []
        for master in self.masters():
            client = master.client()
            try:
                found += client.scan_iter(match=pattern, count=1000)
            finally:
                client.close()
        return found

    def every_string(self) -> list[bytes]:
        """:func:`helpers.every_string_in_redis` over every master."""
        found: list[bytes] = []
        for master in self.masters():
            client = master.client()
            try:
                found += every_string_in_redis(client)
            finally:
                client.close()
        return found

    def router(self) -> redis.Redis | redis.cluster.RedisCluster:
        """A client that sends each command to the master of its key (writing in tests)."""
        if self.name == "cluster":
            nodes = [redis.cluster.ClusterNode(*host_port(a)) for a in self.redis["CLUSTER_NODES"]]
            return redis.cluster.RedisCluster(startup_nodes=nodes)
        return self.masters()[0].client()


def _binary(config: pytest.Config) -> str | None:
    value = config.getoption("redis_server_bin")
    return str(value) if value else None


@pytest.fixture(scope="session")
def sentinel_group(pytestconfig: pytest.Config) -> Iterator[SentinelGroup]:
    """A master, a replica and three sentinels for the whole session (failover tests move
    the master and wait for the group to be whole again)."""
    group = SentinelGroup(_binary(pytestconfig))
    try:
        yield group.start()
    finally:
        group.close()


@pytest.fixture(scope="session")
def cluster_group(pytestconfig: pytest.Config) -> Iterator[ClusterGroup]:
    """Three masters with a replica each for the whole session."""
    group = ClusterGroup(_binary(pytestconfig))
    try:
        yield group.start()
    finally:
        group.close()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA and a server certificate for 127.0.0.1, made for this session."""
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def tls_server(certs: Certs, pytestconfig: pytest.Config) -> Iterator[TlsRedisServer]:
    """A redis-server that only speaks TLS."""
    server = TlsRedisServer(
        certs.server_cert, certs.server_key, certs.ca_cert, binary=_binary(pytestconfig)
    )
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture(scope="session")
def tls_cluster_group(certs: Certs, pytestconfig: pytest.Config) -> Iterator[ClusterGroup]:
    """Three TLS-only masters (no replicas: cheap to start) in one cluster, whose nodes talk
    to each other over TLS and require a client certificate signed by the test CA."""
    tls = TlsFiles(
        certs.server_cert, certs.server_key, certs.ca_cert, (certs.client_cert, certs.client_key)
    )
    group = ClusterGroup(_binary(pytestconfig), replicas=0, tls=tls)
    try:
        yield group.start()
    finally:
        group.close()


@pytest.fixture
def unstarted_cluster(pytestconfig: pytest.Config) -> Iterator[ClusterGroup]:
    """Three cluster masters (no replicas) on ports nobody listens on yet: the test starts
    them, and with them the cluster, when it wants Redis to appear."""
    group = ClusterGroup(_binary(pytestconfig), replicas=0)
    try:
        yield group
    finally:
        group.close()


def make_topology(name: str, request: pytest.FixtureRequest) -> Topology:
    if name == "sentinel":
        group: SentinelGroup = request.getfixturevalue("sentinel_group")
        return Topology(
            name,
            {
                "MODE": "sentinel",
                "SENTINELS": group.sentinel_addresses,
                "SENTINEL_MASTER": SENTINEL_MASTER,
            },
            group.flush,
            lambda: [group.master()],
            group.data_nodes,
        )
    if name == "cluster":
        cluster: ClusterGroup = request.getfixturevalue("cluster_group")
        return Topology(
            name,
            {"MODE": "cluster", "CLUSTER_NODES": cluster.startup_nodes},
            cluster.flush,
            cluster.masters,
            cluster.nodes,
        )
    server: RedisServer = request.getfixturevalue("redis_server")
    if not server.is_running:
        server.start()
    return standalone(server)


def standalone(server: RedisServer) -> Topology:
    """``server`` as a topology of its own."""

    def flush() -> None:
        client = server.client()
        try:
            client.flushall()
        finally:
            client.close()

    # HOST and PORT, not URL: a URL would win over the ACL user's USERNAME and PASSWORD.
    address = {"HOST": server.host, "PORT": server.port}
    return Topology("standalone", address, flush, lambda: [server], [server])


@pytest.fixture(params=TOPOLOGIES)
def topology(request: pytest.FixtureRequest) -> Topology:
    """Each topology in turn, emptied for this test."""
    made = make_topology(request.param, request)
    made.flush()
    return made
