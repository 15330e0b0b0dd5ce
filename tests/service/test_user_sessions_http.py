"""A user's sessions over HTTP: list, revoke one, revoke others, the cap, and the admin view."""

from __future__ import annotations

from collections.abc import Callable

import redis
from sessioncookie import as_session
from starlette.testclient import TestClient

from helpers import ADMIN_KEY, device, login, wait_for
from redis_server import RedisServer

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _mine(client: TestClient, cookie: str) -> list[dict[str, object]]:
    response = client.get("/api/me/sessions", headers=as_session(cookie))
    assert response.status_code == 200, response.text
    sessions: list[dict[str, object]] = response.json()["data"]["sessions"]
    return sessions


def test_two_devices_listed_revoke_one(client: TestClient) -> None:
    """A user lists only their own devices, under opaque ids with the current one flagged, and
    revoking one ends it (a second revoke is 404)."""
    phone = device(client, "alice", "phone")
    laptop = device(client, "alice", "laptop")
    device(client, "bob", "bob-device")
    sessions = _mine(client, laptop)
    assert [s["user_agent"] for s in sessions] == ["phone", "laptop"]
    assert [s["current"] for s in sessions] == [False, True]
    assert all(set(s) >= {"id", "created_at", "last_seen_at", "ip"} for s in sessions)
    # Handles are opaque: neither the cookie nor the token appears.
    for s in sessions:
        assert str(s["id"]) not in phone
        assert str(s["id"]) not in laptop
    phone_id = sessions[0]["id"]
    revoked = client.delete(f"/api/me/sessions/{phone_id}", headers=as_session(laptop))
    assert revoked.status_code == 200
    assert client.get("/api/auth/me", headers=as_session(phone)).status_code == 401
    assert [s["user_agent"] for s in _mine(client, laptop)] == ["laptop"]
    again = client.delete(f"/api/me/sessions/{phone_id}", headers=as_session(laptop))
    assert again.status_code == 404


def test_revoke_others_keeps_current(client: TestClient) -> None:
    """Revoking the others ends every session but the caller's and reports how many it ended."""
    others = [device(client, "alice", f"d{i}") for i in range(3)]
    current = device(client, "alice", "keeper")
    response = client.post("/api/me/sessions/revoke-others", headers=as_session(current))
    assert response.json()["data"] == {"revoked": 3}
    for cookie in others:
        assert client.get("/api/auth/me", headers=as_session(cookie)).status_code == 401
    assert [s["user_agent"] for s in _mine(client, current)] == ["keeper"]


def test_logout_and_expiry_leave_the_index(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    """Short TTLs: idle-expired and logged-out sessions vanish from the list and from Redis."""
    client = make_client(redis_url, session={"EXPIRES": 1, "ABSOLUTE_LIFETIME": 60})
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    leaving = device(client, "alice", "leaving")
    idle = device(client, "alice", "idle")
    index = client.app.state.hub.manager.user_keys.sessions("alice")  # type: ignore[attr-defined]
    assert r.zcard(index) == 2
    client.post("/api/auth/logout", headers=as_session(leaving))
    assert r.zcard(index) == 1  # removed at once on logout
    manager = client.app.state.hub.manager  # type: ignore[attr-defined]
    idle_key = manager.core.redis_ops.keys.session(manager.storage_id_for_cookie(idle))
    wait_for(lambda: r.exists(idle_key) == 0)  # the idle session expires in Redis
    keeper = device(client, "alice", "keeper")
    assert [s["user_agent"] for s in _mine(client, keeper)] == ["keeper"]
    assert r.zrange(index, 0, -1) == [manager.storage_id_for_cookie(keeper)]
    assert idle


def test_max_per_user_revokes_oldest(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    """A login past MAX_PER_USER revokes the user's oldest session and keeps the newer ones."""
    client = make_client(redis_url, session={"MAX_PER_USER": 2})
    first = device(client, "alice", "first")
    device(client, "alice", "second")
    third = device(client, "alice", "third")
    assert client.get("/api/auth/me", headers=as_session(first)).status_code == 401
    assert [s["user_agent"] for s in _mine(client, third)] == ["second", "third"]


def test_admin_routes_need_key_and_work(client: TestClient) -> None:
    """Admin session routes refuse callers without the admin key, and with it list, revoke one and
    revoke all of a user's sessions, leaving other users' sessions alone."""
    device(client, "alice", "a1")
    a2 = device(client, "alice", "a2")
    bob = device(client, "bob", "b1")
    for method, path in [
        ("GET", "/api/users/alice/sessions"),
        ("DELETE", "/api/users/alice/sessions"),
        ("DELETE", "/api/users/alice/sessions/whatever"),
    ]:
        assert client.request(method, path).status_code == 401
        assert client.request(method, path, headers=as_session(bob)).status_code == 401
        bad = {"Authorization": "Bearer not-the-admin-key-at-all"}
        assert client.request(method, path, headers=bad).status_code == 403
    listed = client.get("/api/users/alice/sessions", headers=ADMIN).json()["data"]["sessions"]
    assert [s["user_agent"] for s in listed] == ["a1", "a2"]
    one = client.delete(f"/api/users/alice/sessions/{listed[0]['id']}", headers=ADMIN)
    assert one.status_code == 200
    assert client.delete("/api/users/alice/sessions/nope", headers=ADMIN).status_code == 404
    assert client.delete("/api/users/alice/sessions", headers=ADMIN).json()["data"] == {
        "revoked": 1
    }
    assert client.get("/api/auth/me", headers=as_session(a2)).status_code == 401
    assert client.get("/api/auth/me", headers=as_session(bob)).status_code == 200


def test_cannot_touch_another_users_sessions(client: TestClient) -> None:
    """A user cannot revoke another user's session (404), and the own-session routes refuse
    callers without a cookie."""
    alice = device(client, "alice", "a")
    bob = device(client, "bob", "b")
    bob_id = _mine(client, bob)[0]["id"]
    assert client.delete(f"/api/me/sessions/{bob_id}", headers=as_session(alice)).status_code == 404
    assert client.get("/api/auth/me", headers=as_session(bob)).status_code == 200
    assert client.get("/api/me/sessions").status_code == 401
    assert client.post("/api/me/sessions/revoke-others").status_code == 401
    assert client.delete(f"/api/me/sessions/{bob_id}").status_code == 401
    assert login(client)  # the fixture helper still works alongside


def test_degraded_listing_and_recovery(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """While Redis is down the list comes from memory; logins then reach the Redis index."""
    server = fresh_redis_server
    client = make_client(server.url, redis={"PROBE_INTERVAL": 0.2})
    hub = client.app.state.hub  # type: ignore[attr-defined]
    before = device(client, "alice", "before")
    server.kill()
    during = device(client, "alice", "during")
    assert [s["user_agent"] for s in _mine(client, during)] == ["before", "during"]
    server.restart()
    wait_for(lambda: hub.manager.core.mode == "redis")
    r = redis.Redis.from_url(server.url, decode_responses=True)
    index = hub.manager.user_keys.sessions("alice")
    # The restarted server is empty (no persistence): the outage login's index entry was
    # written by the recovery hook, next to its session copied from memory.
    assert r.zrange(index, 0, -1) == [hub.manager.storage_id_for_cookie(during)]
    assert [s["user_agent"] for s in _mine(client, during)] == ["during"]
    assert before


def test_sessions_stay_listed_after_redis_loses_the_users_index(
    client: TestClient, redis_server: RedisServer
) -> None:
    """When Redis evicts or loses a user's index key, the sessions the service still serves are
    listed (and indexed again) on the next read of the list, so they can still be revoked."""
    phone = device(client, "alice", "phone")
    laptop = device(client, "alice", "laptop")
    hub = client.app.state.hub  # type: ignore[attr-defined]
    index = hub.manager.user_keys.sessions("alice")
    raw = redis_server.client()
    assert raw.zcard(index) == 2
    raw.delete(index)  # what allkeys-lru eviction does to it

    listed = client.get("/api/me/sessions", headers=as_session(laptop)).json()["data"]
    assert sorted(s["user_agent"] for s in listed["sessions"]) == ["laptop", "phone"]
    assert raw.zcard(index) == 2
    handle = next(s["id"] for s in listed["sessions"] if s["user_agent"] == "phone")
    revoked = client.delete(f"/api/me/sessions/{handle}", headers=as_session(laptop))
    assert revoked.status_code == 200
    assert client.get("/api/auth/me", headers=as_session(phone)).status_code == 401
