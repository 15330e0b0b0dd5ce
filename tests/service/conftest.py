"""Fixtures for the HTTP service: an app on the test Redis, a user, a logged-in client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from helpers import service_settings
from sessionhub.service.app import create_app


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


@pytest.fixture
def client(make_client: Callable[..., TestClient], redis_url: str) -> TestClient:
    """A client of a service on the (flushed) shared test Redis."""
    return make_client(redis_url)
