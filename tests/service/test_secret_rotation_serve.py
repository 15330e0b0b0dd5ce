"""SECRET_KEY rotated across real restarts of ``sessionhub serve``: each configuration is a new
process, and only Redis carries the sessions from one to the next."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from sessioncookie import as_session

from helpers import PASSWORD, PASSWORD_HASH, serve_command, wait_for
from redis_server import free_port

OLD_SECRET, NEW_SECRET = "old-secret-key-0123456789", "new-secret-key-0123456789"


class Service:
    """``sessionhub serve`` in a subprocess on a free loopback port, with a config file."""

    def __init__(self, tmp_path: Path, redis_url: str, name: str, **config: Any) -> None:
        path = tmp_path / f"{name}.yaml"
        users = [{"USERNAME": u, "PASSWORD_HASH": PASSWORD_HASH} for u in ("alice", "bob")]
        path.write_text(yaml.safe_dump({"REDIS": {"URL": redis_url}, "USERS": users, **config}))
        self.log_path = tmp_path / f"{name}.log"
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SESSIONHUB"))}
        env.pop("SECRET_KEY", None)
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                serve_command(path, port, 1),
                cwd=tmp_path,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.statuses: list[int] = []

    def up(self) -> bool:
        """Whether it answers, healthy on Redis; fails the test if the process ended."""
        assert self.process.poll() is None, self.log_path.read_text()
        try:
            return httpx.get(f"{self.base}/api/health/redis").status_code == 200
        except httpx.TransportError:
            return False

    def request(self, method: str, path: str, cookie: str | None = None, **kw: Any) -> Any:
        """One request as a device holding ``cookie``; every status is recorded."""
        headers = as_session(cookie) if cookie else {}
        response = httpx.request(method, self.base + path, headers=headers, **kw)
        self.statuses.append(response.status_code)
        return response

    def login(self, user: str) -> str:
        response = self.request(
            "POST", "/api/auth/login", json={"username": user, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        return str(response.cookies["session"])

    def stop(self) -> str:
        """Stop as a process manager does (SIGTERM); its log, checked for tracebacks and 5xx."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        log = self.log_path.read_text()
        assert "Traceback" not in log, log
        assert [s for s in self.statuses if s >= 500] == []
        return log


StartService = Callable[..., Service]


@pytest.fixture
def start(tmp_path: Path, redis_url: str) -> Iterator[StartService]:
    """``start(name, **config)``: a service on the test Redis, answering; every one started is
    killed at the end of the test if it is still running."""
    started: list[Service] = []

    def make(name: str, **config: Any) -> Service:
        service = Service(tmp_path, redis_url, name, **config)
        started.append(service)
        wait_for(service.up, timeout=30, step=0.2)
        return service

    yield make
    for service in started:
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait()


def _session_keys(redis_url: str) -> set[bytes]:
    client = redis.Redis.from_url(redis_url)
    try:
        return set(client.scan_iter(match="session:*:s:*"))
    finally:
        client.close()


def test_secret_key_rotation_across_real_service_restarts(
    start: StartService, redis_url: str
) -> None:
    """Restarted with a new SECRET_KEY and the old one as a fallback, the service accepts an old
    cookie and moves its session to the new key (new storage id, cookie re-issued); restarted
    without the fallback, the session moved in between still works and one never used in
    between is refused with 401. No request gets a 5xx, no log a traceback."""
    before = start("before", SECRET_KEY=OLD_SECRET)
    used, idle = before.login("alice"), before.login("bob")
    assert before.request("GET", "/api/auth/me", used).status_code == 200
    before.stop()
    stored_before = _session_keys(redis_url)
    assert len(stored_before) == 2

    during = start("during", SECRET_KEY=NEW_SECRET, SECRET_KEY_FALLBACKS=[OLD_SECRET])
    me = during.request("GET", "/api/auth/me", used)
    assert me.status_code == 200, me.text
    assert me.json()["data"]["user_id"] == "alice"
    moved = str(me.cookies["session"])
    assert moved != used
    again = during.request("GET", "/api/auth/me", moved)
    assert again.status_code == 200
    assert "set-cookie" not in again.headers  # moved once: the new cookie is current
    listed = during.request("GET", "/api/me/sessions", moved).json()["data"]["sessions"]
    assert [s["current"] for s in listed] == [True]
    stored_during = _session_keys(redis_url)
    assert len(stored_during) == 2
    assert len(stored_during - stored_before) == 1  # alice's, under its new storage id
    during.stop()

    after = start("after", SECRET_KEY=NEW_SECRET)
    me = after.request("GET", "/api/auth/me", moved)
    assert me.status_code == 200, me.text
    assert me.json()["data"]["user_id"] == "alice"
    for stale in (idle, used):  # signed with the dropped key: refused before Redis is asked
        refused = after.request("GET", "/api/auth/me", stale)
        assert refused.status_code == 401, refused.text
    bye = after.request("POST", "/api/auth/logout", idle)  # a cookie to forget, not an error
    assert (bye.status_code, bye.json()["data"]) == (200, {"logged_out": False})
    assert after.request("GET", "/api/me/sessions", moved).status_code == 200
    after.stop()
