"""ASVS V7 over HTTP: remember me, re-authentication before ending sessions, and revoking a
user's sessions on every instance (account disabled, credentials changed)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from sessioncookie import as_session
from starlette.testclient import TestClient
from test_coherence_http import core_of, mirrored, status

from helpers import ADMIN_KEY, PASSWORD, Clock, device, wait_for

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
REVOKE_OTHERS = "/api/me/sessions/revoke-others"


def with_clock(client: TestClient) -> Clock:
    """Put a test clock on the instance's core: expiry and freshness are judged by it."""
    clock = Clock()
    core_of(client).clock = clock
    return clock


def remembered_login(client: TestClient, user: str) -> tuple[str, str]:
    """Log in with ``remember: true``; the cookie and its Set-Cookie header."""
    client.cookies.clear()
    response = client.post(
        "/api/auth/login", json={"username": user, "password": PASSWORD, "remember": True}
    )
    assert response.status_code == 200, response.text
    client.cookies.clear()
    return response.cookies["session"], response.headers["set-cookie"]


def reauthenticated(client: TestClient, cookie: str) -> str:
    """Re-authenticate the session ``cookie`` names with the password; the new cookie, after
    checking that the old one is dead."""
    again = client.post(
        "/api/auth/reauthenticate", json={"password": PASSWORD}, headers=as_session(cookie)
    )
    assert again.status_code == 200, again.text
    fresh = str(again.cookies["session"])
    client.cookies.clear()
    assert fresh != cookie
    assert status(client, cookie) == 401
    return fresh


def test_remember_me_outlives_the_idle_timeout_and_is_listed(client: TestClient) -> None:
    """A remembered login gets a lasting cookie and REMEMBER_EXPIRES; an ordinary one idles out
    after EXPIRES; the session list tells them apart."""
    clock = with_clock(client)
    plain = device(client, "alice", "plain")
    kept, header = remembered_login(client, "alice")
    assert "Max-Age=2592000" in header
    listed = client.get("/api/me/sessions", headers=as_session(kept)).json()["data"]["sessions"]
    assert {s["user_agent"]: s["remember"] for s in listed} == {"plain": False, "testclient": True}
    clock.ms += 7201 * 1000
    assert status(client, plain) == 401
    assert status(client, kept) == 200


def test_ending_sessions_needs_a_recent_login(client: TestClient) -> None:
    """After AUTH.REAUTH_MAX_AGE, revoking answers 401 reauth_required; the password again gives
    a new token (the old one is dead) with which it works."""
    clock = with_clock(client)
    device(client, "alice", "other")
    cookie = device(client, "alice", "here")
    clock.ms += 901 * 1000
    refused = client.post(REVOKE_OTHERS, headers=as_session(cookie))
    assert refused.status_code == 401
    error = refused.json()["error"]
    assert (error["code"], error["reason"], error["max_age"]) == ("reauth_required", "stale", 900)
    wrong = client.post(
        "/api/auth/reauthenticate", json={"password": "nope"}, headers=as_session(cookie)
    )
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_credentials")
    fresh = reauthenticated(client, cookie)
    done = client.post(REVOKE_OTHERS, headers=as_session(fresh))
    assert done.json()["data"] == {"revoked": 1}


def test_reauthenticate_needs_a_session(client: TestClient) -> None:
    """Without a live session there is nothing to re-authenticate: 401, never a new token."""
    response = client.post("/api/auth/reauthenticate", json={"password": PASSWORD})
    assert response.status_code == 401
    assert "set-cookie" not in response.headers


def test_admin_revoke_ends_a_users_sessions_on_every_instance(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    """Disabling a user from instance A ends their sessions everywhere: instance B drops its
    mirror copies through the revocation channel, and other users keep theirs."""
    a, b = make_client(redis_url), make_client(redis_url)
    phone, laptop = device(a, "alice", "phone"), device(b, "alice", "laptop")
    bobs = device(a, "bob")
    for cookie in (phone, laptop):
        assert status(b, cookie) == 200
        assert mirrored(b, cookie)
    refused = a.post("/api/admin/users/alice/revoke", json={})
    assert refused.status_code == 401
    response = a.post("/api/admin/users/alice/revoke", json={}, headers=ADMIN)
    assert response.json()["data"] == {"revoked": 2, "reason": "account_disabled"}
    wait_for(lambda: not mirrored(b, phone) and not mirrored(b, laptop))
    assert status(b, phone) == status(b, laptop) == status(a, phone) == 401
    assert status(b, bobs) == 200
    bad = a.post("/api/admin/users/bob/revoke", json={"reason": "Not A Reason!"}, headers=ADMIN)
    assert bad.status_code == 422


def test_credentials_changed_hook_reaches_every_instance(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    """The library hook for a password change, called on A's hub, ends the user's other sessions
    on B too and keeps the session that made the change."""
    a, b = make_client(redis_url), make_client(redis_url)
    here, elsewhere = device(a, "alice", "here"), device(b, "alice", "elsewhere")
    assert status(b, elsewhere) == 200
    hub = a.app.state.hub  # type: ignore[attr-defined]
    keep = hub.manager.storage_id_for_cookie(here)
    assert a.portal is not None
    assert a.portal.call(functools.partial(hub.credentials_changed, "alice", keep=keep)) == 1
    wait_for(lambda: not mirrored(b, elsewhere))
    assert status(b, elsewhere) == 401
    assert status(b, here) == 200
