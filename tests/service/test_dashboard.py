"""The Grafana dashboard against the service: every metric it names is served, and every one of
its expressions returns data from a real Prometheus scraping a running service.

Docker is not needed: the Prometheus is Debian's ``prometheus`` binary (``scripts/_install.sh``
installs it with the dev extra), run with ``deploy/prometheus.yml`` as it is except for its
target (the test service's port instead of ``app:5000``) and its intervals (1 s instead of 10 s,
so that a rate has two samples within seconds).
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from liveserver import Server
from metrics_scrape import DEPLOY, METRIC_NAME, dashboard_queries, parse
from sessioncookie import as_session
from starlette.testclient import TestClient

from helpers import ADMIN_KEY, login, wait_for
from redis_server import free_port
from sessionhub.embedded import terminate

FAST = {"REFRESH_INTERVAL": 0.2}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def served_names(text: str) -> set[str]:
    """The sample names of an exposition (``_total``, ``_bucket``, ... included)."""
    return {name for name, _ in parse(text)}


def test_every_metric_the_dashboard_queries_is_served(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    """Each metric name in the dashboard's expressions is a sample of /metrics once the service
    has served a login and its first background read, not only after rarer events."""
    wanted = {name for _, expr in dashboard_queries() for name in METRIC_NAME.findall(expr)}
    assert len(wanted) >= 20
    client = make_client(redis_url, metrics=FAST)
    login(client)
    wait_for(lambda: "sessionhub_redis_used_memory_bytes" in client.get("/metrics").text)
    missing = wanted - served_names(client.get("/metrics").text)
    assert not missing, f"the dashboard queries metrics /metrics does not serve: {missing}"


def prometheus_binary() -> str:
    """Debian's prometheus; its absence is an install problem, reported as a failure."""
    found = shutil.which("prometheus")
    if found is None:
        pytest.fail(
            "no prometheus on PATH: scripts/_install.sh installs it (apt-get install prometheus)"
        )
    return found


class Prometheus:
    """A real Prometheus scraping ``target`` with deploy/prometheus.yml, on a free port."""

    def __init__(self, target: str, directory: Path) -> None:
        config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
        config["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
        (job,) = config["scrape_configs"]
        (targets,) = job["static_configs"]
        assert targets["targets"] == ["app:5000"], "deploy/prometheus.yml changed: update this"
        targets["targets"] = [target]
        path = directory / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        self.base = f"http://127.0.0.1:{free_port()}"
        self.log = directory / "prometheus.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [prometheus_binary(), f"--config.file={path}",
                 f"--storage.tsdb.path={directory / 'data'}",
                 f"--web.listen-address={self.base.removeprefix('http://')}", "--log.level=warn"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(self._ready, timeout=30)

    def _ready(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        try:
            return httpx.get(f"{self.base}/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.base}/api/v1/query", params={"query": expr})
        body = response.json()
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def close(self) -> None:
        terminate(self.process, 15)


@pytest.fixture
def live(redis_url: str) -> Iterator[Server]:
    """The service on a real port, on the test Redis, reading its figures every 0.2 s."""
    server = Server(redis_url, metrics=FAST)
    yield server
    server.close()


@pytest.fixture
def prometheus(live: Server, tmp_path: Path) -> Iterator[Prometheus]:
    running = Prometheus(f"127.0.0.1:{live.port}", tmp_path)
    yield running
    running.close()


def has_a_number(series: list[dict[str, Any]]) -> bool:
    """Whether any series has a value that is a number (a rate of nothing gives NaN)."""
    return any(not math.isnan(float(s["value"][1])) for s in series)


def test_every_dashboard_expression_returns_data_from_prometheus(
    live: Server, prometheus: Prometheus
) -> None:
    """After Prometheus has scraped the service once, logins, a logout, a refused password and
    a message delivered on a live stream make every expression of the dashboard return a
    number: each panel has something to draw."""
    wait_for(lambda: prometheus.query('up{job="sessionhub"} == 1') != [], timeout=30)
    for user in ("alice", "bob"):
        live.login(user)
    cookie = live.login("alice", agent="laptop")
    bad = httpx.post(f"{live.base}/api/auth/login", json={"username": "bob", "password": "x"})
    assert bad.status_code == 401
    sent = httpx.post(f"{live.base}/api/users/alice/messages", json={"body": "hi"}, headers=ADMIN)
    assert sent.status_code == 201
    with httpx.stream(
        "GET", f"{live.base}/api/me/messages/stream", headers=as_session(cookie), timeout=10
    ) as stream:
        assert any(line.startswith("data: ") for line in stream.iter_lines())
    logout = httpx.post(f"{live.base}/api/auth/logout", headers=as_session(cookie))
    assert logout.json()["data"]["logged_out"] is True

    empty = dashboard_queries()

    def all_have_data() -> bool:
        nonlocal empty
        empty = [(title, expr) for title, expr in empty if not has_a_number(prometheus.query(expr))]
        return not empty

    try:
        wait_for(all_have_data, timeout=60, step=1)
    except AssertionError:
        pytest.fail(f"dashboard expressions with no data from Prometheus: {empty}")
