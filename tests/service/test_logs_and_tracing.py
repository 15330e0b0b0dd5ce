"""Request ids in responses and log lines, no token in any log line, and OpenTelemetry spans."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sessioncookie import as_session
from starlette.testclient import TestClient

from helpers import PASSWORD, login
from sessionhub.service.logs import log_handler

REQUEST_ID = "req-42.abc:XYZ"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the service logs while the test runs, as JSON lines."""
    out = io.StringIO()
    handler = log_handler("json", out)
    logger = logging.getLogger("sessionhub")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield out
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_valid_request_id_is_echoed(client: TestClient) -> None:
    """A plain X-Request-ID comes back as is; none, or a hostile one, gets a generated id."""
    given = client.get("/healthz", headers={"X-Request-ID": REQUEST_ID})
    assert given.headers["X-Request-ID"] == REQUEST_ID
    generated = client.get("/healthz").headers["X-Request-ID"]
    assert len(generated) == 16
    for bad in ("has spaces", "x" * 129, "line\\nbreak", "<script>"):
        echoed = client.get("/healthz", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
        assert echoed != bad
        assert len(echoed) == 16
    assert client.get("/no/such/path").headers["X-Request-ID"]


def test_log_lines_of_a_request_carry_its_id_and_no_token(
    client: TestClient, json_log: io.StringIO
) -> None:
    """The manager's lines of a login and a logout name the request and the session's short
    storage id prefix, never the cookie or the token in it."""
    response = client.post(
        "/api/auth/login",
        json={"username": "alice", "password": PASSWORD},
        headers={"X-Request-ID": REQUEST_ID},
    )
    cookie = response.cookies["session"]
    client.post("/api/auth/logout", headers={**as_session(cookie), "X-Request-ID": "bye-1"})
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    created = [e for e in lines if e["message"].startswith("Session created")]
    deleted = [e for e in lines if e["message"].startswith("Session deleted")]
    assert [e["request_id"] for e in created] == [REQUEST_ID]
    assert [e["request_id"] for e in deleted] == ["bye-1"]
    assert created[0]["message"].endswith("...")  # the short hash prefix
    token = cookie.partition(".")[0]
    assert token not in json_log.getvalue()
    assert cookie not in json_log.getvalue()


def test_text_log_lines_show_the_request_id() -> None:
    """The text format puts the id in brackets after the logger's name, and nothing outside a
    request."""
    out = io.StringIO()
    handler = log_handler("text", out)
    handler.setFormatter(logging.Formatter("%(name)s%(request)s: %(message)s"))
    record = logging.LogRecord("sessionhub.x", logging.INFO, __file__, 1, "hello", None, None)
    handler.handle(record)
    assert out.getvalue() == "sessionhub.x: hello\n"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """The process's tracer provider, keeping finished spans in memory (set once per process)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


def test_a_span_per_request_and_per_redis_call(
    make_client: Callable[..., TestClient], redis_url: str, spans: InMemorySpanExporter
) -> None:
    """A login is a server span named by its route, with a client span for each Redis call
    under it; no attribute holds the cookie or the token."""
    client = make_client(redis_url, tracing={"ENABLED": True})
    spans.clear()
    cookie = login(client)
    client.get("/api/users/alice/presence", headers=as_session(cookie))
    finished = spans.get_finished_spans()
    servers = [s for s in finished if s.kind == SpanKind.SERVER]
    assert [s.name for s in servers] == [
        "POST /api/auth/login",
        "GET /api/users/{user_id}/presence",
    ]
    login_span = servers[0]
    assert login_span.attributes is not None
    assert login_span.attributes["http.route"] == "/api/auth/login"
    assert login_span.attributes["http.response.status_code"] == 200
    redis_spans = [
        s
        for s in finished
        if s.kind == SpanKind.CLIENT
        and s.parent is not None
        and s.parent.span_id == login_span.context.span_id
    ]
    assert "redis put+user_add" in {s.name for s in redis_spans}
    text = repr([(s.name, dict(s.attributes or {})) for s in finished])
    assert cookie.partition(".")[0] not in text
    assert "alice" not in text  # not even the path: only its template


def test_tracing_is_off_by_default(client: TestClient) -> None:
    """Without TRACING.ENABLED the app has no tracer and its core no tracing observer."""
    assert client.app.state.tracer is None  # type: ignore[attr-defined]
