"""Session events POSTed to ``EVENTS.WEBHOOK_URL``, so another system can react to a logout.

The sender is an event subscriber whose callback only queues: a thread of its own posts each
event as JSON, signed with ``X-SessionHub-Signature: sha256=<HMAC-SHA256 of the body under
EVENTS.WEBHOOK_SECRET>``, and retries a failed delivery with exponential backoff up to
``WEBHOOK_MAX_ATTEMPTS``. The queue is bounded: when the receiver falls behind, the oldest events
are dropped, counted and logged. Standard library only (``urllib``), so the library gains no
dependency. See ``docs/EVENTS.md``.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass

from .events import DropCounter, SessionEvent
from .jsontext import dumps

log = logging.getLogger("sessionhub.webhooks")

SIGNATURE_HEADER = "X-SessionHub-Signature"
TIMESTAMP_HEADER = "X-SessionHub-Timestamp"
MAX_BACKOFF_S = 60.0
"""Longest pause between two attempts, however many retries came before."""


@dataclass(frozen=True)
class WebhookConfig:
    """Where and how events are posted (from the ``EVENTS`` settings)."""

    url: str
    secret: bytes
    timeout_s: float = 5.0
    max_attempts: int = 5
    backoff_s: float = 0.5
    queue_size: int = 1000


def signature(secret: bytes, body: bytes) -> str:
    """The signature header's value for ``body``: what a receiver recomputes and compares."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookSender:
    """Posts queued events from a daemon thread; :meth:`submit` is the event subscriber."""

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self.delivered = 0
        self.failed = 0
        """Events given up on after ``max_attempts``."""
        self._queue: deque[SessionEvent] = deque()
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._drops = DropCounter(
            log, f"Webhook queue full (EVENTS.WEBHOOK_QUEUE_SIZE = {config.queue_size})"
        )
        # No redirects: the signed body must reach the configured URL or fail there.
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._thread = threading.Thread(target=self._run, name="sessionhub-webhooks", daemon=True)
        self._thread.start()

    def submit(self, event: SessionEvent) -> None:
        """Queue ``event`` for posting; never waits on the network."""
        with self._ready:
            if len(self._queue) >= self.config.queue_size:
                self._queue.popleft()
                self._drops.add()
            self._queue.append(event)
            self._ready.notify()

    @property
    def dropped(self) -> int:
        """Events dropped from the full queue so far, oldest first."""
        return self._drops.count

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._stop.is_set():
                    self._ready.wait()
                if self._stop.is_set():
                    return
                event = self._queue.popleft()
            self._deliver(event)

    def _deliver(self, event: SessionEvent) -> None:
        event_id = secrets.token_hex(16)  # the same on every attempt: receivers deduplicate on it
        for attempt in range(1, self.config.max_attempts + 1):
            if self._post(event, event_id):
                self.delivered += 1
                return
            if attempt < self.config.max_attempts:
                pause = min(self.config.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
                if self._stop.wait(pause):
                    return
        self.failed += 1
        log.warning(
            "Webhook gave up on a %s event after %d attempts", event.kind, self.config.max_attempts
        )

    def _post(self, event: SessionEvent, event_id: str) -> bool:
        sent_at = int(time.time())
        # The timestamp is in the signed body too: the header alone could be replayed with it.
        payload = {"id": event_id, "sent_at": sent_at, **event.as_dict()}
        body = dumps(payload)
        # The settings only accept http:// and https:// URLs.
        request = urllib.request.Request(  # noqa: S310
            self.config.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(self.config.secret, body),
                TIMESTAMP_HEADER: str(sent_at),
            },
        )
        try:
            with self._opener.open(request, timeout=self.config.timeout_s) as response:
                status: int = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, http.client.HTTPException) as exc:
            log.info("Webhook delivery failed: %s", exc)
            return False
        if 200 <= status < 300:
            return True
        log.info("Webhook delivery refused: HTTP %d", status)
        return False

    def close(self) -> None:
        """Stop posting (an attempt in flight ends within the timeout); what is queued is lost."""
        self._stop.set()
        with self._ready:
            self._ready.notify()
        self._thread.join(timeout=self.config.timeout_s + 1)
        if self._queue:
            log.warning("Webhook sender stopped with %d events not sent", len(self._queue))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None
