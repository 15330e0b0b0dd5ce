"""Fixtures for the HTTP service: a client of an app on the test Redis (``make_client`` is in
the top conftest: the topology tests start services too)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.testclient import TestClient


@pytest.fixture
def client(make_client: Callable[..., TestClient], redis_url: str) -> TestClient:
    """A client of a service on the (flushed) shared test Redis."""
    return make_client(redis_url)
