"""Log lines of the service: text or JSON, each line of a request carrying its request id.

The id comes from the request's ``X-Request-ID`` header when it is a plain token (letters,
digits, ``._:-``, at most 128 characters), else it is generated; the response echoes it. Log
lines never hold a token or cookie: sessions appear as the short prefix of their storage id.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
import time
from contextvars import ContextVar
from typing import Protocol, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..jsontext import compact

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request)s: %(message)s"
HEADER = "X-Request-ID"
_HEADER_KEY = HEADER.lower().encode()
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

REQUEST_ID: ContextVar[str | None] = ContextVar("sessionhub_request_id", default=None)
"""The id of the request being answered (``None`` outside a request). Not reset when the
request ends: the server runs each request in a task of its own, whose context goes with it,
and the handler of an unexpected error runs after the middleware has returned."""


class ResponseObserver(Protocol):
    """Told of each HTTP response once it is complete (the HTTP metrics)."""

    def response(self, scope: Scope, status: int, started: float) -> None:
        """``status`` was answered (500 if the app raised first) to the request of ``scope``,
        which arrived at ``started`` (``time.perf_counter``)."""


class RequestIdMiddleware:
    """ASGI middleware: sets :data:`REQUEST_ID` and echoes it in the response header; tells
    ``observer``, if any, of each response."""

    def __init__(self, app: ASGIApp, observer: ResponseObserver | None = None) -> None:
        self.app = app
        self.observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope["headers"])
        REQUEST_ID.set(request_id)
        header = (_HEADER_KEY, request_id.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        if self.observer is None:
            await self.app(scope, receive, send_with_id)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.observer.response(scope, status, started)


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's ``X-Request-ID`` if it is a plain token, else a new random one."""
    for name, value in headers:
        if name == _HEADER_KEY:
            given = value.decode("latin-1")
            if _VALID_ID.fullmatch(given):
                return given
            break
    return secrets.token_hex(8)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (and ``request``, `` [id]`` or empty, for the text format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = REQUEST_ID.get()
        record.request_id = request_id
        record.request = f" [{request_id}]" if request_id else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return compact(entry)


def log_handler(log_format: str, stream: TextIO | None = None) -> logging.Handler:
    """A handler writing ``text`` or ``json`` lines with request ids (to stderr by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestIdFilter())
    text = logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(JsonFormatter() if log_format == "json" else text)
    return handler


def configure_service_logging(level: str, log_format: str) -> None:
    """Route every log line of the process (uvicorn's too) through one such handler."""
    logging.basicConfig(level=level.upper(), handlers=[log_handler(log_format)], force=True)
    logging.getLogger("sessionhub").setLevel(level.upper())
