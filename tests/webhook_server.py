"""A real HTTP server on a free loopback port that records webhook posts (for the tests)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    body: bytes
    headers: dict[str, str]
    """Names in lower case, as HTTP compares them."""

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


class WebhookReceiver:
    """Answers 500 to the first ``fail_first`` posts, 204 to the others, and records them all.

    ``hold`` blocks each handler until it is set (a receiver that stalls)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.received: list[Received] = []
        self.hold = threading.Event()
        self.hold.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                with lock:
                    receiver.received.append(Received(body, headers))
                    failing = len(receiver.received) <= receiver.fail_first
                receiver.hold.wait()
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def bodies(self) -> list[dict[str, Any]]:
        return [r.json for r in list(self.received)]

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def webhook_receiver(fail_first: int = 0) -> Iterator[WebhookReceiver]:
    """A running :class:`WebhookReceiver`, shut down on leaving."""
    receiver = WebhookReceiver(fail_first).start()
    try:
        yield receiver
    finally:
        receiver.close()
