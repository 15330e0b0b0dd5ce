"""Webhooks from the service: a logout and an admin's revoke reach another system."""

from __future__ import annotations

from collections.abc import Callable

from starlette.testclient import TestClient

from helpers import ADMIN_KEY, device, login, wait_for
from webhook_server import webhook_receiver

SECRET = "webhook-secret-0123456789"


def test_the_service_reports_logout_and_admin_revoke(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    """A logout over HTTP and an admin's revoke of a user's sessions reach the webhook, each with
    its reason."""
    with webhook_receiver() as receiver:
        client = make_client(
            redis_url, events={"WEBHOOK_URL": receiver.url, "WEBHOOK_SECRET": SECRET}
        )
        login(client, "alice")
        assert client.post("/api/auth/logout").json()["data"]["logged_out"] is True
        device(client, "bob")
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        assert client.delete("/api/users/bob/sessions", headers=admin).status_code == 200

        def destroyed() -> list[tuple[str, str]]:
            return [
                (b["user_id"], b["reason"]) for b in receiver.bodies() if b["kind"] == "destroyed"
            ]

        wait_for(lambda: len(destroyed()) == 2)
    assert destroyed() == [("alice", "logout"), ("bob", "admin")]
