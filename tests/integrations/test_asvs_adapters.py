"""ASVS V7 through each framework adapter: freshness and re-authentication, remember me, and a
password change that ends the user's other sessions."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asvs_apps import make_django, make_fastapi, make_flask
from contract_apps import AsgiClient, Client

from helpers import Clock, build_settings

EXPIRES = 600
Maker = Callable[[Any], tuple[Client, Any]]
ADAPTERS: dict[str, Maker] = {"flask": make_flask, "fastapi": make_fastapi, "django": make_django}


@pytest.fixture(params=sorted(ADAPTERS))
def app_and_hub(request: pytest.FixtureRequest, redis_url: str) -> Iterator[tuple[Client, Any]]:
    """A client of the adapter's app and its hub, which judges expiry and freshness by a test
    clock."""
    settings = build_settings(redis_url, session={"EXPIRES": EXPIRES})
    client, hub = ADAPTERS[str(request.param)](settings)
    hub.manager.core.clock = Clock()
    try:
        yield client, hub
    finally:
        if isinstance(client, AsgiClient):
            assert client.client.portal is not None
            client.client.portal.call(hub.aclose)
        client.close()


@pytest.fixture
def app(app_and_hub: tuple[Client, Any]) -> tuple[Client, Clock]:
    """A client of the adapter's app, and the test clock its hub judges expiry and freshness by."""
    client, hub = app_and_hub
    return client, hub.manager.core.clock


def second(client: Client) -> Client:
    """Another browser on the same app: no cookie."""
    other = client.clone()
    other.cookie = None
    return other


def refusal(reply: Any) -> tuple[int, str, str]:
    """Status, error code and reason of a ``require_fresh`` answer."""
    error = reply.body["error"]
    return reply.status, error["code"], error["reason"]


def test_freshness_and_reauthentication(app: tuple[Client, Clock]) -> None:
    """A password login passes a password check but not an mfa one; after max_age it is stale;
    re-authenticating gives a new token with the same data, fresh at the new level."""
    client, clock = app
    assert refusal(client.call("fresh")) == (401, "reauth_required", "not_authenticated")
    client.call("login", {"user": "alice", "level": "password"})
    client.call("set", {"key": "cart", "value": ["book"]})
    assert client.call("fresh").body == {"ok": True}
    assert refusal(client.call("fresh-mfa")) == (401, "reauth_required", "level")
    clock.ms += 61 * 1000
    assert refusal(client.call("fresh")) == (401, "reauth_required", "stale")
    old = client.cookie
    client.call("reauth", {"level": "mfa"})
    assert client.cookie
    assert client.cookie != old
    assert client.call("fresh-mfa").body == {"ok": True}
    assert client.call("read").body == {"data": {"cart": ["book"]}, "user": "alice"}
    client.cookie = old
    assert client.call("read").body["user"] is None


def test_a_signed_in_session_without_data_is_judged_by_its_login(
    app_and_hub: tuple[Client, Any],
) -> None:
    """A session logged in by the library with no data passes require_fresh like one with data."""
    client, hub = app_and_hub
    login = functools.partial(hub.login, "alice", auth_level="password")
    if isinstance(client, AsgiClient):
        assert client.client.portal is not None
        _, client.cookie = client.client.portal.call(login)
    else:
        _, client.cookie = login()
    assert client.call("fresh").body == {"ok": True}
    assert refusal(client.call("fresh-mfa")) == (401, "reauth_required", "level")
    hub.manager.core.clock.ms += 61 * 1000
    assert refusal(client.call("fresh")) == (401, "reauth_required", "stale")


def test_remember_me(app: tuple[Client, Clock]) -> None:
    """A remembered login gets a lasting cookie and outlives the idle timeout; an ordinary one
    does not; the user's session list tells them apart."""
    client, clock = app
    plain = second(client)
    reply = client.call("login", {"user": "alice", "remember": True})
    assert any("max-age=" in header.lower() for header in reply.set_cookies)
    plain.call("login", {"user": "alice"})
    assert sorted(client.call("sessions").body["remember"]) == [False, True]
    clock.ms += (EXPIRES + 1) * 1000
    assert plain.call("read").body["user"] is None
    assert client.call("read").body["user"] == "alice"


def test_password_change_ends_the_other_sessions(app: tuple[Client, Clock]) -> None:
    """The credentials-changed hook ends the user's other sessions and keeps the current one."""
    client, _ = app
    other = second(client)
    client.call("login", {"user": "alice"})
    other.call("login", {"user": "alice"})
    assert client.call("change-password", {"now": True}).body == {"revoked": 1}
    assert other.call("read").body["user"] is None
    assert client.call("read").body["user"] == "alice"


def test_a_partitioned_host_cookie_from_every_writer(redis_url: str) -> None:
    """Flask, the ASGI middleware and the service all write a ``__Host-`` cookie as Secure, at
    Path=/, without Domain, and Partitioned when asked."""
    from starlette.testclient import TestClient

    from helpers import PASSWORD, service_settings
    from sessionhub.integrations.asgi import cookie_header
    from sessionhub.integrations.base import CookieAction
    from sessionhub.service.app import create_app

    hardened = {"COOKIE_NAME": "__Host-id", "COOKIE_SECURE": True, "COOKIE_PARTITIONED": True}
    settings = build_settings(redis_url, session=hardened)
    flask_client, _ = make_flask(settings)
    try:
        flask_reply = flask_client.call("login", {"user": "alice"})
    finally:
        flask_client.close()
    asgi = cookie_header(settings.session, CookieAction(set_value="v"))
    assert asgi is not None
    with TestClient(create_app(service_settings(redis_url, session=hardened))) as service:
        login = {"username": "alice", "password": PASSWORD}
        service_header = service.post("/api/auth/login", json=login).headers["set-cookie"]
    for header in (*flask_reply.set_cookies, asgi.decode(), service_header):
        attributes = {part.strip().split("=")[0].lower() for part in header.split(";")}
        assert header.startswith("__Host-id=")
        assert {"secure", "path", "partitioned"} <= attributes
        assert "domain" not in attributes
