"""Run a real, throw-away ``redis-server`` process for tests.

The server listens on a free loopback port (never 6379, where the machine's shared Redis
lives), keeps its files in a private temp dir and persists nothing, so a restart always
comes back empty.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import redis

from sessionhub.embedded import terminate

ENV_VAR = "SESSIONHUB_REDIS_SERVER"
FORBIDDEN_PORT = 6379
HOST = "127.0.0.1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
MIN_VERSION = (7, 0)
"""SessionHub's scripts read a key's expiry time with PEXPIRETIME, new in Redis 7.0."""
HOW_TO_GET_ONE = (
    "apt-get install redis-server (Debian 12, Ubuntu 24.04 or newer), "
    f"or set {ENV_VAR}=/path/to/redis-server (Redis 7.0 or newer)"
)


def find_redis_server(explicit: str | os.PathLike[str] | None = None) -> str:
    """Return the path of a usable redis-server binary or raise RuntimeError.

    Order: ``explicit``, env ``SESSIONHUB_REDIS_SERVER``, ``redis-server`` on PATH; the one found
    must be Redis 7.0 or newer.
    """
    return _new_enough(_locate(explicit))


def _locate(explicit: str | os.PathLike[str] | None) -> str:
    for source, candidate in (("argument", explicit), (ENV_VAR, os.environ.get(ENV_VAR))):
        if candidate:
            path = Path(candidate)
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
            resolved = shutil.which(str(candidate))
            if resolved:
                return resolved
            raise RuntimeError(
                f"redis-server given via {source} ({candidate!r}) is not an executable file. "
                f"To get one: {HOW_TO_GET_ONE}."
            )

    on_path = shutil.which("redis-server")
    if on_path:
        return on_path

    raise RuntimeError(
        "No redis-server binary found (the tests need a real Redis and never use port "
        f"{FORBIDDEN_PORT}). To get one: {HOW_TO_GET_ONE}."
    )


def _new_enough(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"v=(\d+)\.(\d+)", out.stdout)
    if match is None or (int(match[1]), int(match[2])) < MIN_VERSION:
        found = match.group(0) if match else repr(out.stdout.strip() or out.stderr.strip())
        raise RuntimeError(
            f"{binary} is {found}; SessionHub needs Redis "
            f"{'.'.join(map(str, MIN_VERSION))} or newer. To get one: {HOW_TO_GET_ONE}."
        )
    return binary


def free_port() -> int:
    """Return a currently free TCP port on 127.0.0.1 (never 6379)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port != FORBIDDEN_PORT:
            return port


CLUSTER_BUS_OFFSET = 10000


def free_cluster_port() -> int:
    """A free port whose cluster bus port (10,000 higher) is free too, so at most 55535."""
    while True:
        port = free_port()
        if port + CLUSTER_BUS_OFFSET > 65535:
            port -= CLUSTER_BUS_OFFSET + 1024  # the kernel hands out high ports: shift down
        if port in (FORBIDDEN_PORT, FORBIDDEN_PORT + CLUSTER_BUS_OFFSET) or port < 1024:
            continue
        if _port_free(port) and _port_free(port + CLUSTER_BUS_OFFSET):
            return port


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


class RedisServer:
    """A redis-server child process on a private loopback port and temp dir."""

    def __init__(
        self,
        *,
        binary: str | os.PathLike[str] | None = None,
        password: str | None = None,
        extra_args: Sequence[str] = (),
        port: int | None = None,
    ) -> None:
        if port == FORBIDDEN_PORT:
            raise ValueError(f"refusing to run a test Redis on port {FORBIDDEN_PORT}")
        self.binary: str = find_redis_server(binary)
        self.password: str | None = password
        self.extra_args: tuple[str, ...] = tuple(extra_args)
        self._port: int = port if port is not None else free_port()
        self._port_fixed: bool = port is not None
        self._dir: Path = Path(tempfile.mkdtemp(prefix="sessionhub-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    # -- properties -------------------------------------------------------------------

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        return self._port

    @property
    def dir(self) -> Path:
        return self._dir

    @property
    def log_path(self) -> Path:
        return self._dir / "redis.log"

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{HOST}:{self._port}/0"

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.is_running and self._process else None

    # -- lifecycle --------------------------------------------------------------------

    def start(self, *, loaded: bool = True) -> RedisServer:
        """Start the server (no-op if running) and wait until it answers PING.

        ``loaded=False`` returns as soon as it answers at all, LOADING included.
        """
        if self.is_running:
            return self
        attempts = 1 if self._port_fixed else 3
        for attempt in range(attempts):
            try:
                self._spawn_and_wait(loaded)
            except _PortInUseError:
                if attempt == attempts - 1:
                    raise RuntimeError(
                        f"port {self._port} stayed busy; redis-server could not bind.\n"
                        f"{self._log_tail()}"
                    ) from None
                self._port = free_port()
            else:
                # From now on restarts must reuse this port.
                self._port_fixed = True
                return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Stop gracefully: SIGTERM, then SIGKILL if still alive after 5 s."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            self.thaw()  # a stopped process would keep SIGTERM pending
            terminate(process, STOP_TIMEOUT)
        self._release()

    def kill(self) -> None:
        """Kill with SIGKILL, simulating a crash."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        self._release()

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing (a hung host)."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signum)

    def restart(self) -> RedisServer:
        """Stop and start again on the same port in the same dir (data is not kept)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and delete its temp dir."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def client(self, **kwargs: Any) -> redis.Redis:
        """Return a new ``redis.Redis`` for this server (bytes responses by default)."""
        options: dict[str, Any] = {
            "host": HOST,
            "port": self._port,
            "password": self.password,
            "decode_responses": False,
            "socket_connect_timeout": 2.0,
            "socket_timeout": 5.0,
        }
        options.update(kwargs)
        return redis.Redis(**options)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<RedisServer {HOST}:{self._port} {state} dir={self._dir}>"

    # -- internals --------------------------------------------------------------------

    def _command(self) -> list[str]:
        args = [
            self.binary,
            "--port",
            str(self._port),
            "--bind",
            HOST,
            "--dir",
            str(self._dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            str(self.log_path),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        args += list(self.extra_args)
        return args

    def _spawn_and_wait(self, loaded: bool) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self._dir / "stdout.log", "ab") as out:
            self._process = subprocess.Popen(
                self._command(),
                cwd=self._dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        probe = self.client(socket_connect_timeout=0.5, socket_timeout=0.5, retry=None)
        try:
            while True:
                if self._process.poll() is not None:
                    code = self._process.returncode
                    self._release()
                    new_log = self._read_log(log_offset)
                    if "Address already in use" in new_log and not self._port_fixed:
                        raise _PortInUseError
                    raise RuntimeError(
                        f"redis-server ({self.binary}) exited with code {code} while "
                        f"starting on port {self._port}.\n{self._log_tail()}"
                    )
                try:
                    if probe.ping():
                        return
                except redis.BusyLoadingError:
                    if not loaded:
                        return
                except (redis.RedisError, OSError):
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(
                        f"redis-server did not answer PING on port {self._port} within "
                        f"{START_TIMEOUT:.0f} s.\n{self._log_tail()}"
                    )
                time.sleep(0.05)
        finally:
            probe.close()

    def _release(self) -> None:
        self._process = None

    def _read_log(self, offset: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _log_tail(self, lines: int = 30) -> str:
        parts: list[str] = []
        for path in (self.log_path, self._dir / "stdout.log"):
            try:
                text = path.read_text("utf-8", "replace")
            except OSError:
                continue
            tail = "\n".join(text.splitlines()[-lines:])
            if tail:
                parts.append(f"--- tail of {path} ---\n{tail}")
        return "\n".join(parts) or f"(no log output in {self._dir})"


class _PortInUseError(Exception):
    pass


# -- topologies ---------------------------------------------------------------------------


def _wait(predicate: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if predicate():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not reached within {timeout:.0f} s")
        time.sleep(0.1)


class SentinelServer(RedisServer):
    """A redis-server in sentinel mode; its config file lives in its own temp dir.

    ``config`` replaces the suite's own sentinel config (its ``port`` is overridden).
    """

    def __init__(
        self,
        master_port: int,
        *,
        binary: str | None = None,
        config: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(binary=binary, **kwargs)
        self.conf = self.dir / "sentinel.conf"
        self.conf.write_text(
            config
            or f"sentinel monitor {SENTINEL_MASTER} {HOST} {master_port} 2\n"
            f"sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n"
            f"sentinel failover-timeout {SENTINEL_MASTER} 4000\n"
            f"sentinel parallel-syncs {SENTINEL_MASTER} 1\n"
        )

    def _command(self) -> list[str]:
        # Sentinel rewrites its config file, so it must come first and be writable.
        base = super()._command()
        return [base[0], str(self.conf), "--sentinel", *base[1:]]


SENTINEL_MASTER = "sessionhub"


class SentinelGroup:
    """A master, one replica and three sentinels watching them, each on a free loopback port.

    Failover tests move the master; :meth:`master` always asks the sentinels where it is, and
    :meth:`settle` waits until the group is whole again (a master with a connected replica,
    every sentinel agreeing).
    """

    def __init__(
        self,
        binary: str | None = None,
        *,
        extra_args: Sequence[str] = (),
        started: tuple[RedisServer, RedisServer, list[SentinelServer]] | None = None,
    ) -> None:
        """``started``: a master, its replica and sentinels already running (``start()`` is not
        for them); the group waits for them and closes them."""
        if started is not None:
            self.master_server, self.replica, self.sentinels = started
        else:
            self.master_server = RedisServer(binary=binary, extra_args=extra_args)
            self.replica = RedisServer(binary=binary, extra_args=extra_args)
            self.sentinels = []
        self.binary = binary

    @property
    def data_nodes(self) -> list[RedisServer]:
        return [self.master_server, self.replica]

    @property
    def sentinel_addresses(self) -> list[str]:
        return [f"{HOST}:{s.port}" for s in self.sentinels]

    def start(self) -> SentinelGroup:
        self.master_server.start()
        self.replica.extra_args += ("--replicaof", HOST, str(self.master_server.port))
        self.replica.start()
        self.sentinels = [
            SentinelServer(self.master_server.port, binary=self.binary) for _ in range(3)
        ]
        for sentinel in self.sentinels:
            sentinel.start()
        self.settle()
        return self

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        return self.sentinels[index].client(decode_responses=True)

    def master_address(self) -> tuple[str, int]:
        client = self.sentinel_client()
        try:
            host, port = client.sentinel_get_master_addr_by_name(SENTINEL_MASTER)
        finally:
            client.close()
        return str(host), int(port)

    def master(self) -> RedisServer:
        """The data node the sentinels name as master now."""
        _, port = self.master_address()
        return next(node for node in self.data_nodes if node.port == port)

    def replica_of_master(self) -> RedisServer:
        master = self.master()
        return next(node for node in self.data_nodes if node is not master)

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every sentinel names the same running master, which has a replica in
        sync, and knows the other two sentinels (so a quorum can fail over)."""

        def whole() -> bool:
            answers = set()
            for index in range(len(self.sentinels)):
                client = self.sentinel_client(index)
                try:
                    answers.add(tuple(client.sentinel_get_master_addr_by_name(SENTINEL_MASTER)))
                    if len(client.sentinel_sentinels(SENTINEL_MASTER)) < 2:
                        return False
                    # Sentinel refreshes a replica's link status only every ten seconds:
                    # the data nodes themselves say whether replication is up (below).
                    replicas = client.sentinel_slaves(SENTINEL_MASTER)
                    if not any(not r["is_sdown"] for r in replicas):
                        return False
                finally:
                    client.close()
            if len(answers) != 1:
                return False
            master = self.master()
            if not master.is_running:
                return False
            info = master.client(decode_responses=True).info("replication")
            replica = next(n for n in self.data_nodes if n is not master)
            link = replica.client(decode_responses=True).info("replication")
            return (
                info["role"] == "master"
                and int(info["connected_slaves"]) >= 1
                and link.get("master_link_status") == "up"
            )

        _wait(lambda: self._point_replica() or whole(), "a settled sentinel group", timeout)

    def _point_replica(self) -> bool:
        # Sentinel reconfigures a demoted or restarted master only at its next INFO poll, ten
        # seconds away; sending it the same REPLICAOF now saves every failover test that wait.
        host, port = self.master_address()
        for node in self.data_nodes:
            if node.port == port or not node.is_running:
                continue
            client = node.client(decode_responses=True)
            try:
                info = client.info("replication")
                if info["role"] == "master" or int(info.get("master_port", 0)) != port:
                    client.replicaof(host, port)
            finally:
                client.close()
        return False

    def flush(self) -> None:
        client = self.master().client()
        try:
            client.flushall()
        finally:
            client.close()

    def replicas_caught_up(self) -> None:
        """Wait until the replica holds every write the master has (before failing over)."""
        wait_replicated(self.master())

    def close(self) -> None:
        for node in [*self.sentinels, *self.data_nodes]:
            node.close()


def wait_replicated(master: RedisServer, timeout: float = 10.0) -> None:
    """Wait until every replica of ``master`` has acknowledged its whole replication stream."""

    def caught_up() -> bool:
        client = master.client(decode_responses=True)
        try:
            info = client.info("replication")
        finally:
            client.close()
        offset = int(info["master_repl_offset"])
        replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
        return bool(replicas) and all(int(r["offset"]) >= offset for r in replicas)

    _wait(caught_up, f"replicas of {master.port} in sync", timeout)


@dataclass(frozen=True)
class TlsFiles:
    """What a TLS-only node needs: its certificate and key, the CA, and the client certificate
    and key that it requires of every client (the other nodes, redis-cli and the tests)."""

    cert: Path
    key: Path
    ca: Path
    client: tuple[Path, Path]

    def cli_args(self) -> list[str]:
        """redis-cli's options to reach such a node."""
        cert, key = self.client
        return ["--tls", "--cacert", str(self.ca), "--cert", str(cert), "--key", str(key)]


SHARDS = 3


class ClusterGroup:
    """A Redis Cluster of three masters with ``replicas`` replicas each (one by default), on
    free loopback ports; with ``tls``, every node speaks only TLS, to clients and to the other
    nodes (cluster bus and replication)."""

    NODE_TIMEOUT_MS = 1000

    def __init__(
        self,
        binary: str | None = None,
        *,
        extra_args: Sequence[str] = (),
        started: list[RedisServer] | None = None,
        replicas: int = 1,
        tls: TlsFiles | None = None,
    ) -> None:
        """``started``: six nodes already running and joined (``start()`` is not for them)."""
        self.replicas = replicas
        self.tls = tls
        if started is not None:
            self.nodes = started
            return
        args = (
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(self.NODE_TIMEOUT_MS),
            # A failover must not wait for a replica's data age: these replicas are in sync.
            "--cluster-replica-validity-factor",
            "0",
            # A replica's first sync starts at once, not after the default 5 s diskless delay.
            "--repl-diskless-sync-delay",
            "0",
            *extra_args,
        )
        self.nodes = [self._node(binary, args) for _ in range(SHARDS * (1 + replicas))]

    def _node(self, binary: str | None, args: Sequence[str]) -> RedisServer:
        port = free_cluster_port()
        if self.tls is None:
            return RedisServer(binary=binary, extra_args=args, port=port)
        tls_args = ("--tls-cluster", "yes", "--tls-replication", "yes")
        return TlsRedisServer(
            self.tls.cert,
            self.tls.key,
            self.tls.ca,
            client=self.tls.client,
            binary=binary,
            extra_args=(*args, *tls_args),
            port=port,
        )

    @property
    def data_nodes(self) -> list[RedisServer]:
        return self.nodes

    @property
    def startup_nodes(self) -> list[str]:
        return [f"{HOST}:{node.port}" for node in self.nodes[:3]]

    def start(self) -> ClusterGroup:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli", path=str(Path(self.nodes[0].binary).parent)) or "redis-cli"
        subprocess.run(
            [
                cli,
                *(self.tls.cli_args() if self.tls else []),
                "--cluster",
                "create",
                *[f"{HOST}:{n.port}" for n in self.nodes],
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.settle()
        return self

    def node_info(self, node: RedisServer) -> dict[str, Any]:
        client = node.client(decode_responses=True)
        try:
            reply = client.execute_command("CLUSTER", "INFO")
            return dict(reply) if isinstance(reply, dict) else _parse_info(reply)
        finally:
            client.close()

    def masters(self) -> list[RedisServer]:
        """The running nodes that are masters now."""
        out = []
        for node in self.nodes:
            if not node.is_running:
                continue
            client = node.client(decode_responses=True)
            try:
                if client.info("replication")["role"] == "master":
                    out.append(node)
            finally:
                client.close()
        return out

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every running node says the cluster is ok, with three masters that each
        have their replicas linked and in sync."""

        def whole() -> bool:
            running = [n for n in self.nodes if n.is_running]
            for node in running:
                info = self.node_info(node)
                if info.get("cluster_state") != "ok" or int(info["cluster_known_nodes"]) != len(
                    self.nodes
                ):
                    return False
            masters = self.masters()
            if len(masters) != SHARDS:
                return False
            for master in masters:
                replication = master.client(decode_responses=True).info("replication")
                if int(replication["connected_slaves"]) < self.replicas:
                    return False
                # Connected is not yet in sync: WAIT and failovers need the first sync done.
                if self.replicas and replication["slave0"].get("state") != "online":
                    return False
            return True

        _wait(whole, "a settled cluster", timeout)

    def flush(self) -> None:
        for master in self.masters():
            client = master.client()
            try:
                client.flushall()
            finally:
                client.close()

    def close(self) -> None:
        for node in self.nodes:
            node.close()


def cluster_node_id(node: RedisServer) -> str:
    """``node``'s id in its cluster (what ``CLUSTER SETSLOT`` and ``--cluster-from`` take)."""
    client = node.client(decode_responses=True)
    try:
        return str(client.execute_command("CLUSTER", "MYID"))
    finally:
        client.close()


def errors_answered(node: RedisServer, code: str) -> int:
    """How many calls ``node`` has answered with the error ``code`` (``MOVED``, ``ASK``) since
    it started or its stats were reset."""
    client = node.client(decode_responses=True)
    try:
        return int(client.info("errorstats").get(f"errorstat_{code}", {}).get("count", 0))
    finally:
        client.close()


def _parse_info(text: str) -> dict[str, str]:
    out = {}
    for line in str(text).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


class TlsRedisServer(RedisServer):
    """A redis-server that only speaks TLS, with the given certificate files.

    ``client`` (a certificate and its key, signed by ``ca``): the server also requires every
    client to present a certificate its CA signed, and :meth:`client` presents that one.
    """

    def __init__(
        self,
        cert: Path,
        key: Path,
        ca: Path,
        *,
        client: tuple[Path, Path] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cert, self.key, self.ca = cert, key, ca
        self.client_files = client

    @property
    def url(self) -> str:
        return f"rediss://{HOST}:{self.port}/0"

    def _command(self) -> list[str]:
        # The plain port is closed (0): the only way in is TLS on the server's port.
        return [
            *super()._command(),
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.cert),
            "--tls-key-file", str(self.key),
            "--tls-ca-cert-file", str(self.ca),
            "--tls-auth-clients", "yes" if self.client_files else "no",
        ]  # fmt: skip

    def client(self, **kwargs: Any) -> redis.Redis:
        options: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(self.ca)}
        if self.client_files:
            options |= {"ssl_certfile": str(self.client_files[0])}
            options |= {"ssl_keyfile": str(self.client_files[1])}
        return super().client(**options | kwargs)


class TlsSentinelServer(SentinelServer, TlsRedisServer):
    """A sentinel that only speaks TLS to its clients (and to the servers it watches, with
    ``tls-replication yes`` in its config)."""
