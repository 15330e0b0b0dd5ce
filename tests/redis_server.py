"""Run a real, throw-away ``redis-server`` process for tests.

The server listens on a free loopback port (never 6379, where the machine's shared Redis
lives), keeps its files in a private temp dir and persists nothing, so a restart always
comes back empty.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
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
