"""Shared pytest fixtures: a real, throw-away redis-server (never port 6379)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from starlette.testclient import TestClient

import default_port_guard
from helpers import build_settings, service_settings
from redis_server import RedisServer
from sessionhub.config import Settings
from sessionhub.hub import SessionHub
from sessionhub.service.app import create_app
from topology_fixtures import (  # noqa: F401 - fixtures for every directory
    certs,
    cluster_group,
    sentinel_group,
    tls_cluster_group,
    tls_server,
    topology,
    unstarted_cluster,
)

# Property tests run inside the normal suite, so their example counts stay small; a separate
# command raises them: HYPOTHESIS_PROFILE=long bash scripts/test.sh tests/test_properties*.py
settings.register_profile(
    "suite",
    max_examples=60,
    deadline=None,  # a shared 2-core machine: timing is not what these properties check
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))
default_port_guard.install()


@pytest.fixture(autouse=True)
def _never_the_default_redis() -> Iterator[None]:
    """Fail a test that tried to reach the machine's own Redis on the default port."""
    default_port_guard.attempts.clear()
    yield
    tried = sorted(set(default_port_guard.attempts))
    assert not tried, f"the test connected to {', '.join(tried)}: the suite never does"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--redis-server-bin",
        metavar="PATH",
        default=None,
        help="redis-server binary for the tests (default: $SESSIONHUB_REDIS_SERVER, "
        "redis-server on PATH; Redis 7.0 or newer).",
    )


def _binary(config: pytest.Config) -> str | None:
    value = config.getoption("redis_server_bin")
    return str(value) if value else None


def _running_server(config: pytest.Config, *args: str) -> Iterator[RedisServer]:
    server = RedisServer(binary=_binary(config), extra_args=args)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_server(pytestconfig: pytest.Config) -> Iterator[RedisServer]:
    """One redis-server shared by the whole session; do not stop or kill it in tests."""
    yield from _running_server(pytestconfig)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session server, flushed empty for this test."""
    if not redis_server.is_running:
        redis_server.start()
    client = redis_server.client()
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def fresh_redis_server(pytestconfig: pytest.Config) -> Iterator[RedisServer]:
    """A private redis-server for this test only, free to stop, kill and restart."""
    yield from _running_server(pytestconfig)


@pytest.fixture
def make_redis_server(pytestconfig: pytest.Config) -> Iterator[Callable[..., RedisServer]]:
    """Factory of private redis-servers started with extra arguments (``"--appendonly", "yes"``)."""
    with contextlib.ExitStack() as stack:

        def make(*args: str) -> RedisServer:
            return stack.enter_context(
                contextlib.contextmanager(_running_server)(pytestconfig, *args)
            )

        yield make


@pytest.fixture
def make_settings() -> Callable[..., Settings]:
    """Factory: ``make_settings(url, session={"EXPIRES": 2})`` builds validated Settings."""
    return build_settings


@pytest.fixture(scope="module")
def module_hub(redis_server: RedisServer) -> Iterator[SessionHub]:
    """A blocking hub on the shared server for one module (property tests, whose examples must
    not reuse function-scoped fixtures); examples keep apart by users or sessions of their own."""
    if not redis_server.is_running:
        redis_server.start()
    hub = SessionHub(build_settings(redis_server.url))
    try:
        yield hub
    finally:
        hub.close()


@pytest.fixture
def make_client() -> Iterator[Callable[..., TestClient]]:
    """Factory of started TestClients (lifespan run) for an app on the given Redis URL."""
    clients: list[TestClient] = []

    def make(redis_url: str | None, **sections: Any) -> TestClient:
        app = create_app(service_settings(redis_url, **sections))
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
