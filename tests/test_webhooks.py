"""Webhooks against a real local HTTP server: signed bodies, retries with backoff, a bounded
queue, and their settings."""

from __future__ import annotations

import hmac
from pathlib import Path

import pytest

from helpers import build_settings, wait_for
from sessionhub.config import load_settings
from sessionhub.events import SessionEvent
from sessionhub.exceptions import ConfigError
from sessionhub.hub import SessionHub
from sessionhub.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookConfig,
    WebhookSender,
    signature,
)
from webhook_server import WebhookReceiver, webhook_receiver

SECRET = "webhook-secret-0123456789"


def hook_settings(receiver: WebhookReceiver, **more: object) -> dict[str, object]:
    return {"WEBHOOK_URL": receiver.url, "WEBHOOK_SECRET": SECRET, "WEBHOOK_BACKOFF": 0.02, **more}


def event(n: int) -> SessionEvent:
    return SessionEvent("created", f"{n:032x}", None, None, n)


def test_events_are_posted_signed_and_retried_until_accepted(redis_url: str) -> None:
    """Each event is posted as JSON whose HMAC is in the signature header; a receiver failing the
    first two posts gets the same event (same id) again until it accepts it."""
    with webhook_receiver(fail_first=2) as receiver:
        hub = SessionHub(build_settings(redis_url, events=hook_settings(receiver)))
        try:
            session, _ = hub.login("alice")
            assert hub.destroy(session.storage_id)
            wait_for(lambda: len(receiver.received) == 4)
            assert hub.webhook is not None
            wait_for(lambda: hub.webhook is not None and hub.webhook.delivered == 2)
        finally:
            hub.close()
    bodies = receiver.bodies()
    assert [b["kind"] for b in bodies] == ["created", "created", "created", "destroyed"]
    assert len({b["id"] for b in bodies[:3]}) == 1
    assert bodies[3]["reason"] == "logout"
    assert {b["storage_id"] for b in bodies} == {session.storage_id}
    assert {b["user_id"] for b in bodies} == {"alice"}
    for request in receiver.received:
        expected = signature(SECRET.encode(), request.body)
        assert hmac.compare_digest(request.headers[SIGNATURE_HEADER.lower()], expected)
        assert request.headers[TIMESTAMP_HEADER.lower()] == str(request.json["sent_at"])


def test_a_stalled_receiver_fills_the_bounded_queue_and_drops_the_oldest() -> None:
    """While the receiver holds a post, the queue keeps only the newest events; the dropped ones
    are counted, and submitting never waits."""
    with webhook_receiver() as receiver:
        receiver.hold.clear()
        sender = WebhookSender(WebhookConfig(receiver.url, SECRET.encode(), queue_size=2))
        try:
            sender.submit(event(1))
            wait_for(lambda: len(receiver.received) == 1)
            for n in range(2, 6):
                sender.submit(event(n))
            assert sender.dropped == 2
            receiver.hold.set()
            wait_for(lambda: sender.delivered == 3)
        finally:
            sender.close()
    assert [b["at_ms"] for b in receiver.bodies()] == [1, 4, 5]


def test_the_sender_gives_up_after_its_attempts() -> None:
    """A receiver that always fails gets ``max_attempts`` posts of the event, then no more."""
    with webhook_receiver(fail_first=100) as receiver:
        config = WebhookConfig(receiver.url, SECRET.encode(), max_attempts=3, backoff_s=0.01)
        sender = WebhookSender(config)
        try:
            sender.submit(event(7))
            wait_for(lambda: sender.failed == 1)
        finally:
            sender.close()
    assert len(receiver.received) == 3
    assert sender.delivered == 0


def test_a_webhook_url_needs_a_secret_and_http(tmp_path: Path) -> None:
    """WEBHOOK_URL without WEBHOOK_SECRET, or with another scheme, is a one-line config error."""
    config = tmp_path / "config.yaml"
    config.write_text("EVENTS:\n  WEBHOOK_URL: 'https://hooks.example/sessions'\n")
    with pytest.raises(ConfigError, match=r"EVENTS\.WEBHOOK_SECRET"):
        load_settings(config, env={})
    config.write_text(f"EVENTS:\n  WEBHOOK_URL: 'ftp://x/y'\n  WEBHOOK_SECRET: '{SECRET}'\n")
    with pytest.raises(ConfigError, match="http:// or https://"):
        load_settings(config, env={})
