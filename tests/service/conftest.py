"""Fixtures for the HTTP service: an app on the test Redis, a user, a logged-in client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from helpers import PASSWORD, service_settings
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


def login(client: TestClient, username: str = "alice") -> str:
    """Log in and return the session cookie value the service set."""
    response = client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.cookies["session"]
