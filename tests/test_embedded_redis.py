"""``sessionhub serve`` on a machine with no Redis: it starts, uses and stops a private one.

"The default address" is moved to a free port (SESSIONHUB_DEFAULT_REDIS_PORT): 6379 on this
machine belongs to somebody else's Redis, which no test may touch. tests/test_fresh_clone.py
uses the real default, inside a network namespace of its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import build_settings, wait_for
from redis_server import RedisServer, free_port
from sessionhub.config import load_settings
from sessionhub.embedded import PORT_VAR, answers, names_a_redis, redis_for, wanted


def health(port: int) -> tuple[int, dict[str, object]] | None:
    """The service's Redis health (status, data), or None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health/redis", timeout=2) as r:
            return r.status, json.loads(r.read())["data"]
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())["data"]
    except OSError:
        return None


class Serve:
    """``sessionhub serve`` as a subprocess in ``cwd`` with no config file and no Redis named."""

    def __init__(self, cwd: Path, **env: str) -> None:
        self.port = free_port()
        self.redis_port = free_port()
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SESSIONHUB"))}
        clean.pop("SECRET_KEY", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sessionhub.cli", "serve", "--port", str(self.port)],
            cwd=cwd,
            env={**clean, "SESSIONHUB_DEFAULT_REDIS_PORT": str(self.redis_port), **env},
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: health(self.port) is not None or self.process.poll() is not None, 30)

    def stop(self, how: signal.Signals = signal.SIGINT) -> str:
        """Stop the service with ``how`` (SIGINT: as Ctrl-C does); return its log."""
        if self.process.poll() is None:
            self.process.send_signal(how)
        _, log = self.process.communicate(timeout=30)
        return log


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[list[Serve]]:
    """Services started by the test, stopped at its end whatever happens."""
    started: list[Serve] = []
    yield started
    for service in started:
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait()


def test_serve_starts_healthy_on_its_own_redis_and_stops_it(
    tmp_path: Path, serve: list[Serve]
) -> None:
    """No Redis named and none on the default address: the service starts its own redis-server
    (AOF on, data under .sessionhub/redis), is healthy on it, names it in the log, and stops it
    on exit."""
    service = Serve(tmp_path)
    serve.append(service)
    status = health(service.port)
    assert status is not None, service.stop()
    assert status[0] == 200
    assert status[1]["status"] == "healthy"
    assert answers(service.redis_port)
    assert (tmp_path / ".sessionhub" / "redis" / "appendonlydir").is_dir()
    log = service.stop()
    assert service.process.returncode == 0
    assert "started a private redis-server" in log
    assert f"redis://127.0.0.1:{service.redis_port}/0" in log
    assert "Stopped the private redis-server" in log
    deadline = time.monotonic() + 10
    while answers(service.redis_port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not answers(service.redis_port)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_stops_the_private_redis_too(
    tmp_path: Path, serve: list[Serve], workers: str
) -> None:
    """Stopped with SIGTERM (kill, docker stop, systemd) rather than Ctrl-C, the service still
    stops its private redis-server before it exits, with one worker or several."""
    service = Serve(tmp_path, SESSIONHUB_SERVER__WORKERS=workers)
    serve.append(service)
    assert answers(service.redis_port), service.stop()
    log = service.stop(signal.SIGTERM)
    assert "Stopped the private redis-server" in log
    deadline = time.monotonic() + 10
    while answers(service.redis_port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not answers(service.redis_port)


def test_never_or_an_answering_default_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    """With REDIS.EMBEDDED: never, or with a server already answering on the default address,
    the settings are used as they are and no redis-server is started."""
    monkeypatch.chdir(tmp_path)
    free = {PORT_VAR: str(free_port())}
    never = build_settings(None, session={"TYPE": "redis"}, redis={"EMBEDDED": "never"})
    with redis_for(never, free) as served:
        assert served is never
    taken = {PORT_VAR: str(redis_server.port)}
    auto = build_settings(None, session={"TYPE": "redis"})
    with redis_for(auto, taken) as served:
        assert served is auto
    assert not (tmp_path / ".sessionhub").exists()


def test_only_a_configuration_that_names_no_redis_gets_one() -> None:
    """A URL, host or port from the file or the environment, prod, or memory-only: no private
    Redis; the defaults in dev: one."""
    assert wanted(build_settings(None, session={"TYPE": "redis"}))
    assert not wanted(build_settings("redis://127.0.0.1:1/0"))
    assert not wanted(build_settings(None, session={"TYPE": "memory"}))
    assert not wanted(build_settings(None, session={"TYPE": "redis"}, redis={"EMBEDDED": "never"}))
    assert names_a_redis(load_settings(env={"REDIS_PORT": "6380"}))
    assert names_a_redis(load_settings(env={"SESSIONHUB_REDIS__HOST": "redis.internal"}))
    assert not names_a_redis(load_settings(env={}))
    prod = load_settings(env={"SESSIONHUB_ENV": "prod", "SECRET_KEY": "x" * 16})
    assert not wanted(prod)
