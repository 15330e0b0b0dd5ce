"""Starlette's own ``tests/middleware/test_session.py`` against SessionHub's middleware.

The file is the installed Starlette's, fetched from its sdist (see ``framework_suites``), with
two changes only: the import of ``Session``/``SessionMiddleware`` names SessionHub's, and each
``SessionMiddleware`` is given ``settings=`` that point it at the test's redis-server.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest
from framework_suites import fetch_test_file, rewritten, suite_tests
from starlette.testclient import TestClient

from helpers import build_settings
from sessionhub.config import Settings

_current: list[Settings] = []


def hub_settings() -> Settings:
    """The settings of the running test (its redis-server); read by the rewritten suite."""
    return _current[-1]


@pytest.fixture(autouse=True)
def _redis_for_the_suite(redis_url: str) -> Iterator[None]:
    """Every test of the suite runs on the shared test redis-server, flushed for it."""
    # Their SECRET_KEY wins over the suite's secret_key="example", which SessionHub refuses as
    # too short (16 characters at least).
    _current.append(build_settings(redis_url))
    yield
    _current.pop()


@pytest.fixture
def test_client_factory(anyio_backend_name: str, anyio_backend_options: dict[str, Any]) -> Any:
    """Starlette's own fixture (its tests/conftest.py): a TestClient factory."""
    return functools.partial(
        TestClient, backend=anyio_backend_name, backend_options=anyio_backend_options
    )


_suite = rewritten(
    fetch_test_file("starlette", "tests/middleware/test_session.py"),
    [
        (
            r"from starlette\.middleware\.sessions import Session, SessionMiddleware",
            "from sessionhub.integrations.asgi import RequestSession as Session, "
            "SessionMiddleware\n"
            "from test_integration_starlette_suite import hub_settings",
        ),
        (r"from tests\.types import TestClientFactory", "TestClientFactory = object"),
        (
            r"SessionMiddleware,(\s*)secret_key=",
            r"SessionMiddleware,\1settings=hub_settings(), secret_key=",
        ),
    ],
    "starlette_test_session",
)
globals().update(suite_tests(_suite))
