"""Presence over HTTP and in the library: devices, instances, throttle, daily, degraded mode."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sessioncookie import as_session
from starlette.testclient import TestClient

from helpers import ADMIN_KEY, build_settings, device, login, wait_for
from redis_server import RedisServer
from sessionhub.hub import AsyncSessionHub, SessionHub
from sessionhub.presence import day_of

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def test_online_across_devices_and_instances(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    """Two instances share one online count, and a user stays online until their last device
    logs out."""
    one = make_client(redis_url)
    two = make_client(redis_url)  # a second instance on the same Redis
    phone = device(one, "alice")
    laptop = device(two, "alice")
    bob = device(two, "bob")
    for c, cookie in ((one, phone), (two, bob)):
        data = c.get("/api/presence/online", headers=as_session(cookie)).json()["data"]
        assert data["online_users"] == 2
        assert data["window_seconds"] == 300
    # Logging out of one device keeps alice online; the last one takes her offline.
    one.post("/api/auth/logout", headers=as_session(phone))
    status = two.get("/api/users/alice/presence", headers=as_session(laptop)).json()["data"]
    assert status["online"] is True
    two.post("/api/auth/logout", headers=as_session(laptop))
    assert two.get("/api/users/alice/presence", headers=ADMIN).json()["data"]["online"] is False
    count = one.get("/api/presence/online", headers=as_session(bob)).json()["data"]
    assert count["online_users"] == 1


def test_list_pages_daily_and_authorization(client: TestClient) -> None:
    """Online users page by cursor and daily actives count per date; presence routes need
    credentials, and a user cannot read another user's presence."""
    alice = device(client, "alice")
    bob = device(client, "bob")
    first = client.get("/api/presence/online/users?limit=1", headers=as_session(alice)).json()[
        "data"
    ]
    assert len(first["users"]) == 1
    assert first["next_cursor"]
    second = client.get(
        f"/api/presence/online/users?limit=1&cursor={first['next_cursor']}",
        headers=as_session(alice),
    ).json()["data"]
    assert {first["users"][0]["user_id"], second["users"][0]["user_id"]} == {"alice", "bob"}
    today = day_of(client.app.state.hub.manager.core.clock())  # type: ignore[attr-defined]
    daily = client.get(f"/api/presence/daily?date={today}", headers=as_session(bob))
    assert daily.json()["data"]["active_users"] == 2
    assert (
        client.get("/api/presence/daily?date=2020-01-01", headers=ADMIN).json()["data"][
            "active_users"
        ]
        == 0
    )
    assert client.get("/api/presence/daily?date=nope", headers=ADMIN).status_code == 422
    # Unauthenticated or cross-user: never data.
    for path in (
        "/api/presence/online",
        "/api/presence/online/users",
        "/api/presence/daily",
        "/api/users/bob/presence",
    ):
        assert client.get(path).status_code == 401
        assert (
            client.get(path, headers={"Authorization": "Bearer wrong-key-wrong-key"}).status_code
            == 403
        )
    assert client.get("/api/users/bob/presence", headers=as_session(alice)).status_code == 403
    assert client.post("/api/presence/heartbeat").status_code == 401
    beat = client.post("/api/presence/heartbeat", headers=as_session(alice))
    assert beat.json()["data"]["online"] is True


def test_throttle_and_library_sync_async(redis_url: str) -> None:
    """A repeat touch from the same device within THROTTLE is skipped while other devices write,
    and sync and async hubs count the same online users."""
    settings = build_settings(redis_url, presence={"WINDOW": 60, "THROTTLE": 30})
    hub = SessionHub(settings)
    try:
        assert hub.presence.touch("u1", "s1") is True
        assert hub.presence.touch("u1", "s1") is False  # throttled: no second write
        assert hub.presence.touch("u1", "s2") is True  # another device writes
        assert hub.presence.online_count()["online_users"] == 1
    finally:
        hub.close()

    async def main() -> int:
        ahub = AsyncSessionHub(settings)
        try:
            await ahub.presence.touch("u2", "s3")
            data = await ahub.presence.online_count()
            return int(data["online_users"])
        finally:
            await ahub.aclose()

    assert asyncio.run(main()) == 2


def test_window_expiry(redis_url: str) -> None:
    """A user who stops touching goes offline once the presence WINDOW has passed."""
    settings = build_settings(redis_url, presence={"WINDOW": 1, "THROTTLE": 0})
    hub = SessionHub(settings)
    try:
        hub.presence.touch("gone", "s")
        assert hub.presence.status("gone")["online"] is True
        wait_for(lambda: hub.presence.online_count()["online_users"] == 0, timeout=5)
        assert hub.presence.status("gone")["online"] is False
    finally:
        hub.close()


def test_degraded_counts_locally_and_flushes(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """While Redis is down, presence is counted in memory, then flushed to the online set and
    the daily count."""
    server = fresh_redis_server
    client = make_client(server.url, redis={"PROBE_INTERVAL": 0.2})
    hub = client.app.state.hub  # type: ignore[attr-defined]
    server.kill()
    cookie = device(client, "alice")
    data = client.get("/api/presence/online", headers=as_session(cookie)).json()["data"]
    assert data == {"online_users": 1, "window_seconds": 300, "mode": "degraded"}
    server.restart()
    wait_for(lambda: hub.manager.core.mode == "redis")
    r = server.client()
    keys = hub.manager.user_keys
    assert r.zscore(keys.online_of("alice"), "alice") is not None
    today = day_of(hub.manager.core.clock())
    assert r.pfcount(keys.daily(today, keys.presence_shard("alice"))) == 1
    assert login(client, "bob")
    count = client.get("/api/presence/online").json()["data"]
    assert count["online_users"] == 2
    assert count["mode"] == "redis"
