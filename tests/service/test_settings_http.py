"""User settings over HTTP and through the library: schema, PUT/PATCH, devices, degraded mode."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sessioncookie import as_session
from starlette.testclient import TestClient

from helpers import build_settings, login, wait_for
from redis_server import RedisServer
from sessionhub.exceptions import InvalidPreferencesError
from sessionhub.hub import AsyncSessionHub, SessionHub
from sessionhub.preferences import DEFAULTS


def test_defaults_put_patch_and_every_device(client: TestClient) -> None:
    """Settings start at the defaults, PUT replaces, PATCH merges, and every device and later
    login of the same user sees them; another user sees only their own."""
    phone = login(client)
    client.cookies.clear()
    laptop = login(client)
    client.cookies.clear()
    got = client.get("/api/me/settings", headers=as_session(phone))
    assert got.json()["data"] == DEFAULTS
    put = client.put(
        "/api/me/settings",
        json={"theme": "dark", "language": "zh-CN", "custom": {"a": 1}},
        headers=as_session(phone),
    )
    assert put.status_code == 200, put.text
    patched = client.patch(
        "/api/me/settings",
        json={"timezone": "Asia/Shanghai", "custom": {"b": [1, 2]}},
        headers=as_session(laptop),
    ).json()["data"]
    assert patched == {
        "theme": "dark",
        "language": "zh-CN",
        "timezone": "Asia/Shanghai",
        "notifications": True,
        "custom": {"a": 1, "b": [1, 2]},
    }
    assert client.get("/api/me/settings", headers=as_session(phone)).json()["data"] == patched
    # Settings belong to the user: they survive logging out of every device.
    client.post("/api/auth/logout", headers=as_session(phone))
    client.post("/api/auth/logout", headers=as_session(laptop))
    again = login(client)
    assert client.get("/api/me/settings", headers=as_session(again)).json()["data"] == patched
    # PUT replaces: unspecified keys return to defaults.
    replaced = client.put("/api/me/settings", json={"notifications": False}).json()["data"]
    assert replaced == {**DEFAULTS, "notifications": False}
    # Another user sees only their own.
    client.cookies.clear()
    bob = login(client, "bob")
    assert client.get("/api/me/settings", headers=as_session(bob)).json()["data"] == DEFAULTS


def test_invalid_input_names_each_field_and_changes_nothing(client: TestClient) -> None:
    """Invalid values get a 422 naming every bad field, and what was stored stays as it was."""
    cookie = login(client)
    client.put("/api/me/settings", json={"theme": "light"})
    bad = client.patch(
        "/api/me/settings",
        json={
            "theme": "pink",
            "language": "not a tag!",
            "timezone": "Mars/Olympus",
            "notifications": "yes",
            "colour": 1,
        },
        headers=as_session(cookie),
    )
    assert bad.status_code == 422
    fields = bad.json()["error"]["fields"]
    assert set(fields) == {"theme", "language", "timezone", "notifications", "colour"}
    too_big = client.patch("/api/me/settings", json={"custom": {"k": "x" * 9000}})
    assert too_big.status_code == 422
    assert set(too_big.json()["error"]["fields"]) == {"custom"}
    assert client.put("/api/me/settings", json={"custom": []}).status_code == 422
    assert client.get("/api/me/settings").json()["data"]["theme"] == "light"
    assert client.get("/api/me/settings").json()["data"]["custom"] == {}


def test_unauthenticated_gets_401(client: TestClient) -> None:
    """Reading or writing settings without a session is a 401."""
    assert client.get("/api/me/settings").status_code == 401
    assert client.put("/api/me/settings", json={"theme": "dark"}).status_code == 401
    assert client.patch("/api/me/settings", json={"theme": "dark"}).status_code == 401


def test_library_sync_and_async_share_one_document(redis_url: str) -> None:
    """The blocking and asyncio libraries read and write the same settings; null removes a key."""
    settings = build_settings(redis_url)
    hub = SessionHub(settings)
    try:
        assert hub.preferences.patch("carol", {"theme": "dark", "custom": {"x": 1}})["theme"] == (
            "dark"
        )
        with pytest.raises(InvalidPreferencesError) as info:
            hub.preferences.patch("carol", {"language": "??"})
        assert set(info.value.errors) == {"language"}
        removed = hub.preferences.patch("carol", {"custom": {"x": None}, "theme": None})
        assert removed == DEFAULTS
    finally:
        hub.close()

    import asyncio

    async def main() -> dict[str, object]:
        ahub = AsyncSessionHub(settings)
        try:
            await ahub.preferences.patch("carol", {"language": "pt-BR"})
            result: dict[str, object] = await ahub.preferences.get("carol")
            return result
        finally:
            await ahub.aclose()

    assert asyncio.run(main())["language"] == "pt-BR"


def test_degraded_writes_are_kept_and_flushed(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """While Redis is down, settings are read from and written to memory, then flushed."""
    server = fresh_redis_server
    client = make_client(server.url, redis={"PROBE_INTERVAL": 0.2})
    hub = client.app.state.hub  # type: ignore[attr-defined]
    cookie = login(client)
    client.patch("/api/me/settings", json={"theme": "dark"})
    server.kill()
    assert client.get("/api/me/settings", headers=as_session(cookie)).json()["data"]["theme"] == (
        "dark"
    )
    changed = client.patch("/api/me/settings", json={"language": "fr"}, headers=as_session(cookie))
    assert changed.status_code == 200
    assert hub.manager.core.mode == "degraded"
    server.restart()
    wait_for(lambda: hub.manager.core.mode == "redis")
    raw = server.client().get(hub.manager.user_keys.settings("alice"))
    assert raw is not None
    assert b'"language":"fr"' in raw
    assert b'"theme":"dark"' in raw
