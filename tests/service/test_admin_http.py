"""The operator's API under /api/admin/ and the pages it serves: /admin and /docs."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from sessioncookie import as_session
from starlette.testclient import TestClient

from helpers import ADMIN_KEY, device, wait_for
from redis_server import RedisServer
from sessionhub.service.auth import ADMIN_COOKIE, admin_cookie, admin_cookie_valid
from sessionhub.service.routes_admin import sampling

BEARER = {"Authorization": f"Bearer {ADMIN_KEY}"}


def admin_login(client: TestClient, key: str = ADMIN_KEY) -> str:
    """Log the client in on the admin page's endpoint; return the admin cookie it got."""
    response = client.post("/api/admin/login", json={"key": key})
    assert response.status_code == 200, response.text
    return response.cookies[ADMIN_COOKIE]


def test_overview_needs_the_admin_key(client: TestClient) -> None:
    """Without a key the overview is 401, with a wrong one 403, as every admin endpoint."""
    assert client.get("/api/admin/overview").status_code == 401
    wrong = client.get("/api/admin/overview", headers={"Authorization": "Bearer wrong-key-000000"})
    assert wrong.status_code == 403
    assert wrong.json()["error"]["code"] == "admin_key_invalid"


def test_overview_counts_sessions_logins_and_online_users(client: TestClient) -> None:
    """A login shows up in the overview: one more session, a login this minute, a user online."""
    before = client.get("/api/admin/overview", headers=BEARER).json()["data"]
    assert before["stats"]["total_sessions"] == 0
    device(client, "alice", "phone")
    device(client, "bob", "laptop")
    data = client.get("/api/admin/overview", headers=BEARER).json()["data"]
    assert data["health"]["status"] == "healthy"
    assert data["degraded_since"] is None
    assert data["stats"]["total_sessions"] == 2
    assert data["stats"]["redis_sessions"] == 2
    assert data["online"]["online_users"] == 2
    assert data["memory_store"]["sessions"] >= 2
    assert data["redis_memory"]["used_bytes"] > 0
    assert len(data["activity"]) == 60
    assert data["activity"][-1]["logins"] == 2
    assert data["activity"][-1]["sessions"] == 2


def test_the_key_is_traded_for_a_strict_httponly_cookie(client: TestClient) -> None:
    """The page's login sets an HttpOnly SameSite=Strict cookie that is not the key itself."""
    response = client.post("/api/admin/login", json={"key": ADMIN_KEY})
    assert response.status_code == 200
    header = response.headers["set-cookie"]
    assert "HttpOnly" in header
    assert re.search(r"SameSite=strict", header, re.IGNORECASE)
    assert ADMIN_KEY not in header
    # The client keeps the cookie: the overview now answers without a bearer key.
    assert client.get("/api/admin/overview").status_code == 200
    assert client.post("/api/admin/logout").status_code == 200
    assert client.get("/api/admin/overview").status_code == 401


def test_a_wrong_key_gets_no_cookie(client: TestClient) -> None:
    """A wrong key is a 403 and sets nothing."""
    response = client.post("/api/admin/login", json={"key": "not-the-admin-key-123"})
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    "cookie",
    ["", "garbage", "99999999999.abc", "1.", f"{10**13}.00"],
)
def test_a_forged_admin_cookie_is_refused(client: TestClient, cookie: str) -> None:
    """A cookie the service did not sign, or one past its expiry, grants nothing."""
    client.cookies.set(ADMIN_COOKIE, cookie)
    assert client.get("/api/admin/overview").status_code == 401


def test_an_admin_cookie_expires_and_dies_with_its_key() -> None:
    """A cookie is valid until its expiry, and only while its key is configured."""
    cookie = admin_cookie(ADMIN_KEY, now=1000)
    assert admin_cookie_valid(cookie, [ADMIN_KEY], now=1001)
    assert not admin_cookie_valid(cookie, [ADMIN_KEY], now=10**9)
    assert not admin_cookie_valid(cookie, ["another-admin-key-0123"], now=1001)
    assert not admin_cookie_valid("٣٣٣٣.x", [ADMIN_KEY], now=1001)  # digits, but not ASCII


def test_revoke_a_users_session_with_the_cookie(client: TestClient) -> None:
    """With the page's cookie an operator lists a user's sessions, revokes one, and that device
    is refused at once."""
    phone = device(client, "alice", "iPhone")
    laptop = device(client, "alice", "Firefox")
    admin_login(client)
    listed = client.get("/api/admin/users/alice/sessions").json()["data"]["sessions"]
    assert [s["user_agent"] for s in listed] == ["iPhone", "Firefox"]
    assert all(s["ip"] for s in listed)
    handle = listed[0]["id"]
    assert client.delete(f"/api/admin/users/alice/sessions/{handle}").json()["data"] == {
        "revoked": 1
    }
    assert client.get("/api/auth/me", headers=as_session(phone)).status_code == 401
    assert client.get("/api/auth/me", headers=as_session(laptop)).status_code == 200
    again = client.delete(f"/api/admin/users/alice/sessions/{handle}")
    assert again.status_code == 404
    assert client.delete("/api/admin/users/alice/sessions").json()["data"] == {"revoked": 1}
    assert client.get("/api/auth/me", headers=as_session(laptop)).status_code == 401


def test_overview_while_redis_is_down(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """With Redis gone the overview still answers: degraded since when, the last error, no Redis
    memory, and logins made meanwhile still counted in the chart."""
    client = make_client(fresh_redis_server.url)
    fresh_redis_server.kill()
    assert client.get("/api/health/redis").status_code == 503
    device(client, "alice")
    data = client.get("/api/admin/overview", headers=BEARER).json()["data"]
    assert data["health"]["status"] == "degraded"
    assert data["degraded_since"] is not None
    assert data["health"]["last_error"]
    assert data["redis_memory"] is None
    assert data["stats"]["memory_sessions"] == 1
    assert data["activity"][-1]["logins"] == 1


def test_the_chart_keeps_what_an_outage_counted_once_redis_is_back(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """Logins counted in memory during an outage still show after Redis is back."""
    client = make_client(fresh_redis_server.url, redis={"PROBE_INTERVAL": 0.2})
    device(client, "alice")
    fresh_redis_server.kill()
    assert client.get("/api/health/redis").status_code == 503
    device(client, "bob")
    fresh_redis_server.restart()
    wait_for(lambda: client.get("/api/health/redis").status_code == 200)
    data = client.get("/api/admin/overview", headers=BEARER).json()["data"]
    # The restart lost Redis's own count (no persistence); the outage's login is still there.
    assert data["activity"][-1]["logins"] >= 1


def test_admin_page_and_its_assets_are_served_locally(client: TestClient) -> None:
    """/admin and /docs are HTML whose every script and style comes from the service itself."""
    for page in ("/admin", "/docs"):
        response = client.get(page)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assets = re.findall(r'(?:src|href)="([^"]+)"', response.text)
        assert assets
        for asset in assets:
            assert asset.startswith("/"), asset  # nothing from another host
            assert client.get(asset).status_code == 200, asset
    script = client.get("/admin/static/admin.js").text
    assert "innerHTML" not in script  # server values go in as text only


def test_openapi_lists_the_admin_endpoints(client: TestClient) -> None:
    """The document names every admin endpoint, the cookie among the admin credentials."""
    document = client.get("/openapi.json").json()
    assert "/api/admin/overview" in document["paths"]
    assert "/api/admin/login" in document["paths"]
    assert document["paths"]["/admin"]["get"]["responses"]["200"]["content"]["text/html"]
    assert document["components"]["securitySchemes"]["adminCookie"]["name"] == ADMIN_COOKIE


def test_wrong_admin_keys_are_throttled(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    """Guessing admin keys on the page's login is limited like password guesses (429)."""
    client = make_client(redis_url, auth={"MAX_ATTEMPTS": 2})
    for _ in range(2):
        assert (
            client.post("/api/admin/login", json={"key": "guess-0123456789ab"}).status_code == 403
        )
    refused = client.post("/api/admin/login", json={"key": ADMIN_KEY})
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0


def test_sampling_ends_even_when_a_sample_swallows_the_cancel() -> None:
    """A cancel lost inside a sample (a Redis client turning it into a timeout error, as redis-py
    does on Cluster) still ends the activity sampler when the service shuts down."""

    async def serve_and_shut_down() -> None:
        sampling_now = asyncio.Event()

        async def sample() -> None:
            sampling_now.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:  # what a socket timeout firing at cancel time does
                raise ConnectionError("timed out") from None

        hub = SimpleNamespace(dashboard=SimpleNamespace(sample=sample))
        async with sampling(hub):  # type: ignore[arg-type]
            await sampling_now.wait()

    async def main() -> bool:
        service = asyncio.create_task(serve_and_shut_down())
        # Shutdown waited for the sampler forever; the bound only lets the test fail.
        done, _ = await asyncio.wait({service}, timeout=10)
        service.cancel()
        return service in done

    assert asyncio.run(main())
