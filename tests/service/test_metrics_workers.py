"""GET /metrics from `sessionhub serve --workers 2`: counts summed over both workers, and
degraded mode once the Redis under them dies."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from metrics_scrape import Samples, moved, parse, value

from helpers import ADMIN_KEY, PASSWORD, PASSWORD_HASH, serve_command, wait_for
from redis_server import RedisServer, free_port

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
LOGINS = 12
"""Enough logins on fresh connections that both workers take some (the kernel picks one)."""


class Service:
    """`sessionhub serve --workers 2` as a real process, on a free port."""

    def __init__(self, redis_url: str, tmp_path: Path) -> None:
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "REDIS": {"URL": redis_url, "PROBE_INTERVAL": 0.2},
                    "METRICS": {"REFRESH_INTERVAL": 0.2},
                    "ADMIN": {"API_KEYS": [ADMIN_KEY]},
                    "USERS": [
                        {"USERNAME": name, "PASSWORD_HASH": PASSWORD_HASH}
                        for name in ("alice", "bob")
                    ],
                }
            )
        )
        self.metrics_dir = tmp_path / "metrics"
        self.metrics_dir.mkdir()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SESSIONHUB_", "REDIS_"))},
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
            "SECRET_KEY": "workers-test-secret-0123456789",
        }
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.log = tmp_path / "serve.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                serve_command(config, port, 2),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._answers, timeout=30)

    def _answers(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        try:
            return httpx.get(f"{self.base}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def scrape(self) -> Samples:
        response = httpx.get(f"{self.base}/metrics")
        assert response.status_code == 200
        return parse(response.text)

    def login(self, user: str) -> str:
        # A new connection each time, as separate browsers would make.
        response = httpx.post(
            f"{self.base}/api/auth/login", json={"username": user, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        return response.cookies["session"]

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def service(fresh_redis_server: RedisServer, tmp_path: Path) -> Iterator[Service]:
    running = Service(fresh_redis_server.url, tmp_path)
    yield running
    running.close()


def test_two_workers_sum_their_counts(service: Service, fresh_redis_server: RedisServer) -> None:
    """Logins, logouts and messages on both workers move each counter by exactly what was done;
    the shared figures (sessions in Redis, online users) are counted once, not per worker."""
    before = service.scrape()
    cookies = [service.login("alice" if i % 2 else "bob") for i in range(LOGINS)]
    for cookie in cookies[:5]:
        response = httpx.post(f"{service.base}/api/auth/logout", cookies={"session": cookie})
        assert response.json()["data"]["logged_out"] is True
    httpx.post(f"{service.base}/api/auth/login", json={"username": "bob", "password": "no"})
    for body in ("one", "two", "three"):
        sent = httpx.post(
            f"{service.base}/api/users/bob/messages", json={"body": body}, headers=ADMIN
        )
        assert sent.status_code == 201
    bob = cookies[-2]
    with httpx.stream(
        "GET", f"{service.base}/api/me/messages/stream", cookies={"session": bob}, timeout=10
    ) as stream:
        events = 0
        for line in stream.iter_lines():
            events += line.startswith("data: ")
            if events == 3:
                break
    after = service.scrape()
    delta = moved(before, after)
    assert delta("sessionhub_logins_total", result="ok") == LOGINS
    assert delta("sessionhub_logins_total", result="invalid") == 1
    assert delta("sessionhub_sessions_created_total") == LOGINS
    assert delta("sessionhub_sessions_destroyed_total", reason="logout") == 5
    assert delta("sessionhub_session_duration_seconds_count") == 5
    assert delta("sessionhub_messages_sent_total") == 3
    assert delta("sessionhub_messages_delivered_total") == 3
    # A worker writes its requests' counts to its file within FLUSH_INTERVAL (0.25 s), so a
    # scrape the other worker answers may be that much behind; the count is still exact.
    wait_for(
        lambda: (
            moved(before, service.scrape())(
                "sessionhub_http_requests_total",
                route="/api/auth/login",
                method="POST",
                status="200",
            )
            == LOGINS
        )
    )
    assert value(after, "sessionhub_redis_up") == 1
    assert value(after, "sessionhub_degraded") == 0
    # Both workers are alive and wrote their own files; the shared figures are not doubled.
    assert len(list(service.metrics_dir.glob("gauge_livesum_*.db"))) == 2
    wait_for(
        lambda: value(service.scrape(), "sessionhub_sessions_active", store="redis") == LOGINS - 5
    )
    wait_for(lambda: value(service.scrape(), "sessionhub_online_users") == 2)


def test_two_workers_report_degraded_mode(
    service: Service, fresh_redis_server: RedisServer
) -> None:
    """Redis killed under both workers: every worker's circuit opens (redis_up 0, degraded 1,
    one transition each); restarted, both recover."""
    before = service.scrape()
    fresh_redis_server.kill()

    def degraded() -> bool:
        now = service.scrape()
        return (
            value(now, "sessionhub_redis_up") == 0
            and value(now, "sessionhub_degraded") == 1
            and moved(before, now)("sessionhub_degraded_transitions_total", direction="entered")
            == 2
        )

    wait_for(degraded, timeout=20)
    fresh_redis_server.start()
    wait_for(
        lambda: (
            value(service.scrape(), "sessionhub_redis_up") == 1
            and value(service.scrape(), "sessionhub_degraded") == 0
        ),
        timeout=20,
    )
    after = service.scrape()
    assert moved(before, after)("sessionhub_degraded_transitions_total", direction="left") == 2
