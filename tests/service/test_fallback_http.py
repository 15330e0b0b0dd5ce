"""The seed's fallback story end to end over HTTP, with redis-server really killed and restarted."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from sessioncookie import as_session
from starlette.testclient import TestClient

from helpers import PASSWORD, login, wait_for
from redis_server import RedisServer

PROBE = 0.5


def from_memory(app_client: TestClient, call: Callable[[], httpx.Response]) -> httpx.Response:
    """Send a request; fail unless the circuit stayed open throughout, so that no call of it
    went to Redis (the core sends nothing while open, and reopening would restamp it)."""
    core = app_client.app.state.hub.manager.core  # type: ignore[attr-defined]
    since = core.degraded_since
    assert core.degraded
    response = call()
    assert core.degraded
    assert core.degraded_since == since
    return response


def test_fallback_story(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """Log in, kill Redis, keep working from memory, restart it, and find everything reconciled."""
    server = fresh_redis_server
    app_client = make_client(server.url, redis={"PROBE_INTERVAL": PROBE})
    hub = app_client.app.state.hub  # type: ignore[attr-defined]
    keys = hub.manager.core.redis_ops.keys
    before = login(app_client)  # alice, logged in while Redis is up
    app_client.cookies.clear()
    leaver = login(app_client, "bob")  # bob, logs out during the outage
    app_client.cookies.clear()

    server.kill()
    # The one request that finds Redis gone opens the circuit; every later one is checked.
    assert app_client.get("/api/health/redis").status_code == 503

    def served(call: Callable[[], httpx.Response]) -> httpx.Response:
        return from_memory(app_client, call)

    # Everything keeps working, from memory, without waiting on Redis.
    me = served(lambda: app_client.get("/api/auth/me", headers=as_session(before)))
    assert me.status_code == 200
    assert me.json()["data"]["user_id"] == "alice"
    during = served(
        lambda: app_client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    )
    assert during.status_code == 200
    outage_cookie = during.cookies["session"]
    app_client.cookies.clear()
    assert served(
        lambda: app_client.get("/api/auth/me", headers=as_session(outage_cookie))
    ).is_success
    extended = served(lambda: app_client.post("/api/session/extend", headers=as_session(before)))
    assert extended.status_code == 200
    bye = served(lambda: app_client.post("/api/auth/logout", headers=as_session(leaver)))
    assert bye.json()["data"] == {"logged_out": True}
    assert (
        served(lambda: app_client.get("/api/auth/me", headers=as_session(leaver))).status_code
        == 401
    )

    health = served(lambda: app_client.get("/api/health/redis"))
    assert health.status_code == 503
    assert health.json()["data"]["status"] == "degraded"
    stats = served(lambda: app_client.get("/api/session/stats")).json()["data"]
    assert stats["redis_available"] is False
    assert stats["mode"] == "degraded"
    assert served(lambda: app_client.get("/healthz")).status_code == 200

    server.restart()

    wait_for(lambda: app_client.get("/api/health/redis").status_code == 200, timeout=PROBE * 4)
    fresh = login(app_client)  # new sessions land in Redis
    app_client.cookies.clear()
    raw = server.client()
    storage_id = hub.manager.storage_id_for_cookie
    assert raw.exists(keys.session(storage_id(fresh))) == 1
    assert raw.exists(keys.session(storage_id(outage_cookie))) == 1  # outage session copied in
    assert raw.exists(keys.session(storage_id(before))) == 1  # touched in the outage, written back
    assert raw.exists(keys.session(storage_id(leaver))) == 0  # logout in the outage stays
    assert app_client.get("/api/auth/me", headers=as_session(outage_cookie)).status_code == 200
    assert app_client.get("/api/auth/me", headers=as_session(leaver)).status_code == 401
    stats = app_client.get("/api/session/stats").json()["data"]
    assert stats["redis_available"] is True
    assert stats["redis_sessions"] == 3  # before, outage_cookie, fresh


def test_service_starts_degraded_without_redis(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """With no Redis reachable at start the service starts, degraded, and serves logins."""
    fresh_redis_server.stop()
    app_client = make_client(fresh_redis_server.url, redis={"PROBE_INTERVAL": PROBE})
    assert app_client.get("/api/health/redis").status_code == 503
    cookie = login(app_client)
    assert app_client.get("/api/auth/me", headers=as_session(cookie)).status_code == 200
    fresh_redis_server.start()
    wait_for(lambda: app_client.get("/api/health/redis").status_code == 200, timeout=PROBE * 4)
    assert app_client.get("/api/auth/me", headers=as_session(cookie)).status_code == 200
