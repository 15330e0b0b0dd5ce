"""A private ``redis-server`` for ``sessionhub serve`` on a machine where no Redis is set up.

Without it a fresh clone's service starts degraded, on memory alone. With ``REDIS.EMBEDDED:
auto`` (the default), outside ``SESSIONHUB_ENV=prod``, when the configuration names no Redis (no
``URL``, ``HOST`` or ``PORT`` in the file or the environment) and nothing answers on the default
address, the service starts its own server there: loopback only, data in
``./.sessionhub/redis/`` with AOF on (so sessions survive a restart of the service), in a
session of its own (a Ctrl-C reaches the service, which stops it after its own shutdown), and
stopped with the service. Anyone else's Redis is never touched: something answering on the
default address is used as it is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import NoReturn

from .config import Settings

log = logging.getLogger("sessionhub.embedded")

HOST = "127.0.0.1"
DEFAULT_PORT = 6379
PORT_VAR = "SESSIONHUB_DEFAULT_REDIS_PORT"
"""The port "the default address" means; only the tests move it (6379 is somebody's Redis)."""
BINARY_VAR = "SESSIONHUB_REDIS_SERVER"
DATA_DIR = Path(".sessionhub") / "redis"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


def names_a_redis(settings: Settings) -> bool:
    """Whether the file or the environment said where Redis is (URL, HOST or PORT)."""
    return bool({"url", "host", "port"} & settings.redis.model_fields_set)


def wanted(settings: Settings) -> bool:
    """Whether these settings let ``serve`` start a private Redis (if nothing answers)."""
    return (
        settings.session.type == "redis"
        and settings.redis.embedded == "auto"
        and settings.environment != "prod"
        and not names_a_redis(settings)
    )


def answers(port: int, timeout: float = 0.5) -> bool:
    """Whether anything accepts a connection on the loopback ``port``."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


class EmbeddedRedis:
    """One ``redis-server`` child process on the loopback ``port``, data in ``data_dir``."""

    def __init__(self, binary: str, port: int, data_dir: Path) -> None:
        self.binary = binary
        self.port = port
        self.data_dir = data_dir.resolve()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it accepts connections; RuntimeError if it does not."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            self.binary,
            "--bind", HOST,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(self.port, timeout=0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"the private redis-server did not start; see {self.data_dir / 'redis.log'}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (SIGTERM: Redis finishes its AOF), killing it if it hangs."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        terminate(process, STOP_TIMEOUT)
        log.info("Stopped the private redis-server (pid %d)", process.pid)


def terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM ``process`` and wait for it; SIGKILL it if it is still there after ``timeout``."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _binary(env: Mapping[str, str]) -> str | None:
    explicit = env.get(BINARY_VAR)
    if explicit and os.access(explicit, os.X_OK):
        return explicit
    return shutil.which("redis-server")


@contextlib.contextmanager
def redis_for(settings: Settings, env: Mapping[str, str] = os.environ) -> Iterator[Settings]:
    """``settings``, pointed at a private Redis started here when :func:`wanted` and nothing
    answers on the default address; that server is stopped when the block exits."""
    port = int(env.get(PORT_VAR) or DEFAULT_PORT)
    if not wanted(settings) or answers(port):
        yield settings
        return
    binary = _binary(env)
    if binary is None:
        log.warning(
            "No Redis configured, none on %s:%d and no redis-server installed to start one: "
            "sessions live in memory (apt-get install redis-server, or scripts/serve.sh)",
            HOST,
            port,
        )
        yield settings
        return
    server = EmbeddedRedis(binary, port, DATA_DIR)
    server.start()
    assert server.process is not None
    log.warning(
        "No Redis configured and none on %s:%d: started a private redis-server (pid %d) at %s, "
        "data in %s (AOF on); it stops with the service (REDIS.EMBEDDED: never to prevent this)",
        HOST,
        port,
        server.process.pid,
        server.url,
        server.data_dir,
    )
    redis = settings.redis.model_copy(update={"url": server.url})
    try:
        with _sigterm_unwinds():
            yield settings.model_copy(update={"redis": redis})
    finally:
        server.stop()


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Inside, SIGTERM (``kill``, ``docker stop``, systemd) raises SystemExit. uvicorn passes a
    signal on once it has shut down, and SIGTERM's default action would end the process right
    there, before the private server is stopped, leaving it running on its own."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals
        return
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(128 + signum)  # the shell's exit status for a process ended by a signal
