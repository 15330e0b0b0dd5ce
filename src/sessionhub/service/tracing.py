"""OpenTelemetry tracing (``TRACING.ENABLED``): a span per HTTP request and per Redis call.

Imported only when enabled. Spans go to the tracer provider the process already has (an
application that set up OpenTelemetry itself), else to one made here that exports over OTLP/HTTP,
configured by the standard variables (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``,
...). Attributes name the route template, the method, the status and the Redis script or
command; never a path, header, cookie, token, key or argument.
"""

from __future__ import annotations

import os
import time

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..stores.base import Call, call_name

_DEFAULT_SERVICE_NAME = "sessionhub"


def tracer_provider() -> trace.TracerProvider:
    """The process's provider, or a new OTLP one set as the process's."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    name = os.environ.get("OTEL_SERVICE_NAME", _DEFAULT_SERVICE_NAME)
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


class RedisSpans:
    """Makes a client span of each Redis call the core reports (a :class:`CoreObserver`)."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer
        # The core times calls with perf_counter; spans need wall-clock nanoseconds.
        self._offset_ns = time.time_ns() - time.perf_counter_ns()

    def _ns(self, perf: float) -> int:
        return int(perf * 1e9) + self._offset_ns

    def redis_call(self, call: Call, started: float, ended: float, error: Exception | None) -> None:
        name = call_name(call)
        span = self.tracer.start_span(
            f"redis {name}",
            kind=SpanKind.CLIENT,
            start_time=self._ns(started),
            attributes={"db.system": "redis", "db.operation.name": name},
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end(end_time=self._ns(ended))

    def mode_changed(self, degraded: bool) -> None:
        """Nothing to trace: the log says it."""


class RequestSpans:
    """ASGI middleware: a server span per HTTP request, named by its route template."""

    def __init__(self, app: ASGIApp, tracer: trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in (b"traceparent", b"tracestate")
        }
        method = scope["method"]
        with self.tracer.start_as_current_span(
            method,
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method},
            # An exception's text may quote request data: only its type is recorded.
            record_exception=False,
            set_status_on_exception=False,
        ) as span:

            async def send_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = message["status"]
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            try:
                await self.app(scope, receive, send_status)
            except Exception as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            finally:
                route = scope.get("route")
                if route is not None:
                    span.set_attribute("http.route", route.path)
                    span.update_name(f"{method} {route.path}")
