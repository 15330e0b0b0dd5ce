"""Encryption at rest, key rotation and SECRET_KEY rotation, through the service on real Redis."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from typing import Any

import redis
from sessioncookie import as_session
from starlette.testclient import TestClient

from helpers import device, every_string_in_redis, service_settings
from sessionhub.hub import SessionHub
from sessionhub.rotation import KeyRotation

AGENT = "Mozilla/5.0 (RecognisableAgent-7f3a; like Gecko) " + "x" * 80
SECRET_TEXT = "the-settings-marker-91c2"
BODY_TEXT = "the-message-marker-4d7e"
K1 = {"ID": "k1", "KEY": base64.b64encode(os.urandom(32)).decode()}
K2 = {"ID": "k2", "KEY": base64.b64encode(os.urandom(32)).decode()}

MakeClient = Callable[..., TestClient]


def _login(client: TestClient, user: str) -> str:
    return device(client, user, AGENT)


def _fill(client: TestClient) -> dict[str, str]:
    """Log alice and bob in, give alice settings and bob a message; their cookies."""
    cookies = {user: _login(client, user) for user in ("alice", "bob")}
    put = client.put(
        "/api/me/settings",
        json={"custom": {"note": SECRET_TEXT}},
        headers=as_session(cookies["alice"]),
    )
    assert put.status_code == 200, put.text
    sent = client.post(
        "/api/messages",
        json={"to": "bob", "body": {"text": BODY_TEXT}},
        headers=as_session(cookies["alice"]),
    )
    assert sent.status_code == 201, sent.text
    return cookies


def _check(client: TestClient, cookies: dict[str, str]) -> None:
    """Everything _fill stored reads back through the service."""
    me = client.get("/api/me/settings", headers=as_session(cookies["alice"]))
    assert me.json()["data"]["custom"] == {"note": SECRET_TEXT}
    inbox = client.get("/api/me/messages", headers=as_session(cookies["bob"])).json()["data"]
    assert [m["body"] for m in inbox["messages"]] == [{"text": BODY_TEXT}]
    sessions = client.get("/api/me/sessions", headers=as_session(cookies["alice"])).json()
    assert [s["user_agent"] for s in sessions["data"]["sessions"]] == [AGENT[:512]]


def _plain_hits(redis_url: str) -> list[bytes]:
    client = redis.Redis.from_url(redis_url)
    try:
        strings = every_string_in_redis(client)
    finally:
        client.close()
    # The client address is in the hash too ("testclient"), but also, by design, in the login
    # throttle's key names for LOCKOUT_SECONDS (SECURITY.md): only values are checked for it.
    needles = (b"RecognisableAgent", SECRET_TEXT.encode(), BODY_TEXT.encode())
    hits = [s for s in strings if any(n in s for n in needles)]
    return hits + [s for s in strings if s == b"testclient"]


def test_a_full_dump_holds_no_user_agent_settings_or_message_in_plain_text(
    make_client: MakeClient, redis_url: str
) -> None:
    """With ENCRYPTION.KEYS set, no stored string contains the user agent, a settings value or
    a message body, and all of them read back through the service."""
    client = make_client(redis_url, encryption={"KEYS": [K1]})
    cookies = _fill(client)
    assert _plain_hits(redis_url) == []
    _check(client, cookies)


def test_without_keys_the_same_dump_shows_them(make_client: MakeClient, redis_url: str) -> None:
    """The control: without encryption the markers are in the dump, so the test above can fail."""
    client = make_client(redis_url)
    _fill(client)
    assert _plain_hits(redis_url) != []


def test_turning_encryption_on_keeps_old_values_readable(
    make_client: MakeClient, redis_url: str
) -> None:
    """Values written before encryption was configured still read (they carry no prefix)."""
    before = make_client(redis_url)
    cookies = _fill(before)
    before.__exit__(None, None, None)
    after = make_client(redis_url, encryption={"KEYS": [K1]})
    _check(after, cookies)


def _rotate(redis_url: str, keys: list[dict[str, str]], between: Callable[[], None]) -> Any:
    hub = SessionHub(service_settings(redis_url, encryption={"KEYS": keys}))
    try:
        rotation = KeyRotation(hub.manager.values, "session:", batch=2)
        while True:
            progress = hub.run(rotation.step())
            between()
            if progress.done:
                return progress
    finally:
        hub.close()


def test_rotation_with_the_service_running_loses_nothing(
    make_client: MakeClient, redis_url: str
) -> None:
    """Rotating to a new key in small batches while the service keeps writing loses no write,
    and afterwards the old key can be removed: everything still reads, nothing is unlisted."""
    old = make_client(redis_url, encryption={"KEYS": [K1]})
    cookies = _fill(old)
    old.__exit__(None, None, None)
    service = make_client(redis_url, encryption={"KEYS": [K2, K1]})
    writes: list[int] = []

    def meanwhile() -> None:
        # Writes racing the rotation: each must survive it.
        n = len(writes)
        writes.append(n)
        response = service.patch(
            "/api/me/settings",
            json={"custom": {f"w{n}": n}},
            headers=as_session(cookies["alice"]),
        )
        assert response.status_code == 200, response.text

    progress = _rotate(redis_url, [K2, K1], meanwhile)
    assert progress.unreadable == 0
    assert progress.conflicts == 0
    assert progress.rewritten >= 4  # two sessions' agents and IPs at least
    service.__exit__(None, None, None)

    only_new = make_client(redis_url, encryption={"KEYS": [K2]})
    _check_rotated(only_new, cookies, len(writes))
    health = only_new.get("/api/health/redis").json()["data"]
    assert "no longer lists" not in health["message"]
    assert _plain_hits(redis_url) == []


def _check_rotated(client: TestClient, cookies: dict[str, str], writes: int) -> None:
    me = client.get("/api/me/settings", headers=as_session(cookies["alice"]))
    custom = me.json()["data"]["custom"]
    assert custom == {"note": SECRET_TEXT, **{f"w{n}": n for n in range(writes)}}
    inbox = client.get("/api/me/messages", headers=as_session(cookies["bob"])).json()["data"]
    assert [m["body"] for m in inbox["messages"]] == [{"text": BODY_TEXT}]
    sessions = client.get("/api/me/sessions", headers=as_session(cookies["alice"])).json()
    assert [s["user_agent"] for s in sessions["data"]["sessions"]] == [AGENT[:512]]


def test_a_value_under_a_removed_key_is_missing_and_reported_never_a_500(
    make_client: MakeClient, redis_url: str
) -> None:
    """Removing a key before rotating: its values read as missing (defaults, no body, no
    agent), every request still succeeds, and health names the count."""
    old = make_client(redis_url, encryption={"KEYS": [K1]})
    cookies = _fill(old)
    old.__exit__(None, None, None)
    client = make_client(redis_url, encryption={"KEYS": [K2]})
    me = client.get("/api/me/settings", headers=as_session(cookies["alice"]))
    assert me.status_code == 200
    assert me.json()["data"]["custom"] == {}
    inbox = client.get("/api/me/messages", headers=as_session(cookies["bob"]))
    assert inbox.status_code == 200
    assert [m["body"] for m in inbox.json()["data"]["messages"]] == [None]
    sessions = client.get("/api/me/sessions", headers=as_session(cookies["alice"]))
    assert sessions.status_code == 200
    assert [s["user_agent"] for s in sessions.json()["data"]["sessions"]] == [""]
    health = client.get("/api/health/redis").json()["data"]
    assert health["status"] == "healthy"
    assert "no longer lists" in health["message"]
    # A new write replaces the unreadable document under the current key.
    patched = client.patch(
        "/api/me/settings", json={"theme": "dark"}, headers=as_session(cookies["alice"])
    )
    assert patched.status_code == 200
    assert patched.json()["data"]["theme"] == "dark"


def test_secret_key_rotation_across_a_restart_keeps_everyone_signed_in(
    make_client: MakeClient, redis_url: str
) -> None:
    """SECRET_KEY replaced with the old one as a fallback: old cookies keep working and get a
    new cookie; once the fallback is dropped, the sessions used in between still work."""
    old_secret, new_secret = "old-secret-key-0123456789", "new-secret-key-0123456789"
    before = make_client(redis_url, secret_key=old_secret)
    used, idle = _login(before, "alice"), _login(before, "bob")
    before.__exit__(None, None, None)

    during = make_client(redis_url, secret_key=new_secret, secret_key_fallbacks=[old_secret])
    response = during.get("/api/auth/me", headers=as_session(used))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["user_id"] == "alice"
    moved = response.cookies["session"]
    assert moved != used
    again = during.get("/api/auth/me", headers=as_session(moved))
    assert again.status_code == 200
    assert "set-cookie" not in again.headers  # moved once: the new cookie is current
    listed = during.get("/api/me/sessions", headers=as_session(moved)).json()["data"]
    assert len(listed["sessions"]) == 1
    assert listed["sessions"][0]["current"] is True
    during.__exit__(None, None, None)

    after = make_client(redis_url, secret_key=new_secret)
    assert after.get("/api/auth/me", headers=as_session(moved)).status_code == 200
    # Never used during the window: its cookie is signed with a key no longer accepted.
    assert after.get("/api/auth/me", headers=as_session(idle)).status_code == 401
