"""Fuzzing the service from its own OpenAPI document: every operation, hostile input included.

Schemathesis generates requests (valid and invalid) from /openapi.json and sends each one four
times, as a stranger, a logged-in user, an operator and both at once, to the app on the test
Redis. No answer may be a 5xx, fall outside the document, or show a stack trace. A bounded run
here; ``scripts/fuzz.sh`` runs many more examples (``SESSIONHUB_FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.applications import Starlette

from helpers import ADMIN_KEY, service_settings
from sessionhub.hub import SessionHub
from sessionhub.service.app import create_app
from sessionhub.service.openapi import build_document

# The suite's run is the same every time; scripts/fuzz.sh sets a count and draws new examples.
LONG_RUN = os.environ.get("SESSIONHUB_FUZZ_EXAMPLES")
EXAMPLES = int(LONG_RUN or "12")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
STREAM_READ_SECONDS = 0.3
"""How long a live event stream is read before the client hangs up: it never ends by itself."""


@pytest.fixture
def app(redis_url: str) -> Iterator[Starlette]:
    """An app on the test Redis (keepalives often, so a live stream yields quickly)."""
    yield create_app(service_settings(redis_url, messages={"STREAM_KEEPALIVE": 0.05}))
    # Schemathesis keeps an app's lifespan running until the process exits; this app's ends here.
    asgi.shutdown_lifespans()


@pytest.fixture
def callers(redis_url: str) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The four callers, each a fresh set of request arguments: a fuzzed request may log out."""
    hub = SessionHub(service_settings(redis_url))

    def make() -> list[dict[str, Any]]:
        cookie = {"session": hub.login("alice")[1]}
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        return [{}, {"cookies": cookie}, {"headers": admin}, {"cookies": cookie, "headers": admin}]

    yield make
    hub.close()


# The document is built at import, where the Redis of the test is not known yet, from an app of
# the same routes; each test sends its requests to its own app. (schemathesis.pytest.from_fixture
# would fit, but breaks on pytest 9.2: it reads a node attribute that pytest no longer has.)
_DOCUMENTED = create_app(service_settings(None))
schema = schemathesis.openapi.from_dict(build_document(_DOCUMENTED.routes, "session"))
schema.app = _DOCUMENTED  # the ASGI transport; app= on each call picks the app that answers


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=LONG_RUN is None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_breaks_the_service(
    case: Any, app: Starlette, callers: Callable[[], list[dict[str, Any]]]
) -> None:
    """No generated request, with or without a session or the admin key, gets a 5xx, an answer
    the document does not describe, or a stack trace."""
    stream = case.path.endswith("/stream")
    for caller in callers():
        headers = {**(case.headers or {}), **caller.get("headers", {})}
        kwargs: dict[str, Any] = {"app": app, "headers": headers, "cookies": caller.get("cookies")}
        if stream:
            kwargs["timeout"] = STREAM_READ_SECONDS
        response = case.call(**kwargs)
        case.validate_response(response, checks=CHECKS, headers=headers)
        assert "Traceback" not in response.text
        assert 'File "' not in response.text
