"""The Sentinel and Cluster compose examples (deploy/compose), checked without Docker.

Their SessionHub environment must load through the settings loader and name the topology the
file builds; their redis-server, sentinel and ``redis-cli --cluster create`` command lines are
run for real, on free loopback ports with each service name standing for 127.0.0.1, and
SessionHub is pointed at what they form the way the file points it.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from redis_server import (
    HOST,
    ClusterGroup,
    RedisServer,
    SentinelGroup,
    SentinelServer,
    free_cluster_port,
    free_port,
)
from sessionhub.config import Settings, host_port, load_settings
from sessionhub.hub import SessionHub

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose"
SENTINEL_FILE = COMPOSE / "sentinel.yml"
CLUSTER_FILE = COMPOSE / "cluster.yml"
REDIS_PORT = 6379
SENTINEL_PORT = 26379


def services(path: Path) -> dict[str, Any]:
    """The ``services`` of the compose file ``path``."""
    loaded: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return dict(loaded["services"])


def _interpolated(value: str) -> str:
    # ${SECRET_KEY:?set SECRET_KEY} and the like: compose fills them from the shell.
    return re.sub(r"\$\{(\w+)[^}]*\}", lambda m: f"{m[1].lower()}-for-the-test-0123456789", value)


def app_environment(path: Path) -> dict[str, str]:
    """The app service's environment, as compose hands it over (interpolated strings)."""
    env = services(path)["app"]["environment"]
    return {str(k): _interpolated(str(v)) for k, v in env.items()}


def load(env: dict[str, str], where: Path) -> Settings:
    """The settings the service would load from ``env`` alone (no config file in ``where``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(where)
        return load_settings(env=env)


def listens_on(service: dict[str, Any]) -> int:
    """The port a redis-server or sentinel service listens on inside the compose network."""
    command = " ".join(service["command"])
    if "--sentinel" in command:
        conf = (COMPOSE / "sentinel.conf").read_text(encoding="utf-8")
        return int(re.search(r"^port (\d+)$", conf, re.MULTILINE)[1])  # type: ignore[index]
    args = service["command"]
    return int(args[args.index("--port") + 1]) if "--port" in args else REDIS_PORT


def on_loopback(tokens: list[str], ports: dict[str, int]) -> list[str]:
    """``tokens`` with every service name as 127.0.0.1, and the port after it (as the next token
    or ``name:port``) as that service's port here."""
    out: list[str] = []
    named: str | None = None
    for token in tokens:
        name, colon, port = token.partition(":")
        if name in ports and (not colon or port.isdigit()):
            out.append(f"{HOST}:{ports[name]}" if colon else HOST)
            named = None if colon else name
            continue
        out.append(str(ports[named]) if named is not None and token.isdigit() else token)
        named = None
    return out


def env_on_loopback(env: dict[str, str], ports: dict[str, int]) -> dict[str, str]:
    return {k: ",".join(on_loopback(v.split(","), ports)) for k, v in env.items()}


@pytest.mark.parametrize(
    ("path", "mode", "field", "servers"),
    [
        (SENTINEL_FILE, "sentinel", "sentinels", r"sentinel-\d"),
        (CLUSTER_FILE, "cluster", "cluster_nodes", r"redis-node-\d"),
    ],
)
def test_the_app_environment_loads_and_names_the_file_topology(
    path: Path, mode: str, field: str, servers: str, tmp_path: Path
) -> None:
    """The app's environment loads through the settings loader, picks the file's mode, and
    names only services of the file, on the ports they listen on."""
    settings = load(app_environment(path), tmp_path)
    assert settings.redis.mode == mode
    assert settings.environment == "prod"
    named = [host_port(address) for address in getattr(settings.redis, field)]
    assert named
    found = services(path)
    for host, port in named:
        assert re.fullmatch(servers, host)
        assert listens_on(found[host]) == port
    if mode == "sentinel":
        conf = (COMPOSE / "sentinel.conf").read_text(encoding="utf-8")
        assert f"sentinel monitor {settings.redis.sentinel_master} " in conf


@pytest.mark.parametrize("path", [SENTINEL_FILE, CLUSTER_FILE])
def test_the_app_is_built_from_this_repository_and_waits_for_redis(path: Path) -> None:
    """The app image builds from the repository's Dockerfile and starts after services that
    the file defines; every file a service mounts is there."""
    found = services(path)
    app = found["app"]
    assert (path.parent / app["build"] / "Dockerfile").is_file()
    assert set(app["depends_on"]) <= set(found)
    for service in found.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (path.parent / source).is_file(), volume


def _sentinel_conf_of(service: dict[str, Any]) -> str:
    """The sentinel config a sentinel service runs: the mounted file its command copies and
    then starts in sentinel mode."""
    [mount] = service["volumes"]
    source, target, _ = mount.split(":")
    copy, start = (shlex.split(part) for part in service["command"][2].split("&&"))
    assert copy == ["cp", target, copy[2]]
    assert start == ["exec", "redis-server", copy[2], "--sentinel"]
    return (COMPOSE / source).read_text(encoding="utf-8")


def _opens_on_redis(settings: Settings) -> None:
    hub = SessionHub(settings)
    try:
        _, cookie = hub.create("compose-user", data={"seen": 1})
        opened = hub.open(cookie)
        assert opened is not None
        assert opened["seen"] == 1
        assert hub.manager.core.mode == "redis", hub.manager.core.last_error
    finally:
        hub.close()


def _server(
    service: dict[str, Any], ports: dict[str, int], name: str, binary: str | None
) -> RedisServer:
    """The redis-server of ``service`` with its command line, on its port here."""
    args = on_loopback(service["command"][1:], ports)
    return RedisServer(binary=binary, port=ports[name], extra_args=args)


def _binary(config: pytest.Config) -> str | None:
    value = config.getoption("redis_server_bin")
    return str(value) if value else None


@pytest.fixture
def closing() -> Iterator[Callable[[Any], Any]]:
    """Registers groups to close after the test, whatever it did."""
    groups: list[Any] = []
    yield lambda group: groups.append(group) or group
    for group in groups:
        group.close()


def test_the_sentinel_file_forms_a_watched_master_sessionhub_uses(
    pytestconfig: pytest.Config, tmp_path: Path, closing: Callable[[Any], Any]
) -> None:
    """The file's master, replica and three sentinels, run with its command lines and its
    sentinel.conf, form a master with a replica that every sentinel watches; SessionHub, set up
    as the file sets it up, keeps its sessions on that master."""
    found = services(SENTINEL_FILE)
    binary = _binary(pytestconfig)
    ports = {name: free_port() for name in found if name != "app"}
    data = ("redis-master", "redis-replica")
    master, replica = (_server(found[name], ports, name, binary) for name in data)
    sentinels = [
        SentinelServer(
            ports["redis-master"],
            binary=binary,
            port=ports[name],
            config="\n".join(
                " ".join(on_loopback(line.split(), ports))
                for line in _sentinel_conf_of(found[name]).splitlines()
            ),
        )
        for name in found
        if name.startswith("sentinel-")
    ]
    group = closing(SentinelGroup(binary, started=(master, replica, sentinels)))
    for server in [master, replica, *sentinels]:
        server.start()
    group.settle()
    assert len(sentinels) == 3
    assert group.master() is master

    env = env_on_loopback(app_environment(SENTINEL_FILE), ports)
    _opens_on_redis(load(env, tmp_path))
    assert master.client().dbsize() > 0


def test_the_cluster_file_forms_three_masters_with_a_replica_each(
    pytestconfig: pytest.Config, tmp_path: Path, closing: Callable[[Any], Any]
) -> None:
    """The file's six nodes, run with its command lines and joined by its cluster-init's
    redis-cli --cluster create, form three masters with a replica each; SessionHub, set up as
    the file sets it up, keeps its sessions there."""
    found = services(CLUSTER_FILE)
    binary = _binary(pytestconfig)
    names = [name for name in found if name.startswith("redis-node-")]
    ports = {name: free_cluster_port() for name in names}
    nodes = [_server(found[name], ports, name, binary) for name in names]
    group = closing(ClusterGroup(binary, started=nodes))
    for node in nodes:
        node.start()

    script = shlex.split(found["cluster-init"]["command"][2])
    tokens = [token.strip("()") for token in script]
    start = tokens.index("--cluster") - 1
    create = tokens[start : tokens.index("--cluster-yes") + 1]
    assert create[:3] == ["redis-cli", "--cluster", "create"]
    cli = shutil.which("redis-cli", path=str(Path(nodes[0].binary).parent)) or "redis-cli"
    subprocess.run(
        [cli, *on_loopback(create[1:], ports)], check=True, capture_output=True, timeout=120
    )
    group.settle()
    assert len(group.masters()) == 3

    env = env_on_loopback(app_environment(CLUSTER_FILE), ports)
    _opens_on_redis(load(env, tmp_path))
    assert sum(master.client().dbsize() for master in group.masters()) > 0
