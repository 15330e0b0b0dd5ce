"""The HTTP service's endpoints, their JSON shapes and their answers to bad input."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from sessioncookie import as_session
from starlette.testclient import TestClient

from helpers import ADMIN_KEY, PASSWORD, login, service_settings
from sessionhub.service.app import create_app
from sessionhub.tokens import TokenCodec
from topology_fixtures import Topology

REDIS_INFO_FIELDS = {
    "used_memory",
    "maxmemory",
    "evicted_keys",
    "connected_clients",
    "role",
    "read_at",
}

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture
def client(make_client: Callable[..., TestClient], topology: Topology) -> TestClient:
    """A client of a service on each topology in turn (standalone, Sentinel, Cluster), emptied:
    the service's contract is the same on all three."""
    return make_client(None, session={"TYPE": "redis"}, redis=topology.redis)


def test_login_sets_a_safe_cookie_and_returns_the_user(client: TestClient) -> None:
    """A login answers the user id and expiry and sets an HttpOnly, SameSite=Lax cookie."""
    response = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["data"]["user_id"] == "alice"
    assert ISO.fullmatch(body["data"]["expires_at"])
    header = response.headers["set-cookie"]
    assert header.startswith("session=")
    assert "HttpOnly" in header
    assert "SameSite=lax" in header or "SameSite=Lax" in header
    assert "Path=/" in header
    assert "Max-Age" not in header  # PERMANENT: false -> a browser-session cookie
    assert "Secure" not in header  # COOKIE_SECURE: false


def test_permanent_cookie_has_max_age_and_secure(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    """With PERMANENT and COOKIE_SECURE the cookie carries Max-Age and Secure."""
    client = make_client(redis_url, session={"PERMANENT": True, "COOKIE_SECURE": True})
    response = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    header = response.headers["set-cookie"]
    assert "Max-Age=604800" in header
    assert "Secure" in header


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "wrong"), ("mallory", PASSWORD), ("mallory", "wrong")],
)
def test_wrong_credentials_are_401(client: TestClient, username: str, password: str) -> None:
    """A wrong password and an unknown user get the same 401 and no cookie."""
    response = client.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 401
    assert response.json() == {
        "success": False,
        "error": {"code": "invalid_credentials", "message": "wrong username or password"},
    }
    assert "set-cookie" not in response.headers


def test_unknown_users_cost_the_same_argon2_work(client: TestClient) -> None:
    """The hash checked for an unknown user has the same argon2 parameters as real ones."""
    import argon2

    checker = client.app.state.passwords  # type: ignore[attr-defined]
    real = argon2.extract_parameters(checker._hashes["alice"])
    assert argon2.extract_parameters(checker._dummy) == real


def test_me_extend_logout(client: TestClient) -> None:
    """me shows the session, extend moves its expiry, logout ends it and clears the cookie."""
    login(client)
    me = client.get("/api/auth/me")
    assert me.status_code == 200
    data = me.json()["data"]
    assert set(data) == {
        "user_id",
        "created_at",
        "last_seen_at",
        "expires_at",
        "absolute_expires_at",
    }
    assert data["user_id"] == "alice"
    extended = client.post("/api/session/extend")
    assert extended.status_code == 200
    assert extended.json()["data"]["expires_at"] >= data["expires_at"]
    out = client.post("/api/auth/logout")
    assert out.json() == {"success": True, "data": {"logged_out": True}}
    assert 'session=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    client.cookies.clear()
    assert client.get("/api/auth/me").status_code == 401


def test_logged_out_cookie_cannot_be_replayed(client: TestClient) -> None:
    """A cookie kept after logout is refused."""
    cookie = login(client)
    client.post("/api/auth/logout")
    client.cookies.clear()
    response = client.get("/api/auth/me", headers=as_session(cookie))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "session_expired"


def test_logout_without_a_session_is_harmless(client: TestClient) -> None:
    """Logging out with no cookie (or a bad one) answers 200 and changes nothing."""
    assert client.post("/api/auth/logout").json()["data"] == {"logged_out": False}
    response = client.post("/api/auth/logout", headers=as_session("garbage"))
    assert response.json()["data"] == {"logged_out": False}


def test_login_rotates_an_existing_session(client: TestClient) -> None:
    """Logging in while holding a session cookie issues a new token and kills the old one."""
    first = login(client)
    second = login(client, "bob")
    assert first != second
    client.cookies.clear()
    assert client.get("/api/auth/me", headers=as_session(first)).status_code == 401
    assert client.get("/api/auth/me", headers=as_session(second)).json()["data"]["user_id"] == "bob"


def test_stats_shape(client: TestClient) -> None:
    """/api/session/stats has exactly the documented fields."""
    login(client)
    login(client, "bob")
    body = client.get("/api/session/stats").json()
    assert set(body["data"].pop("redis_info")) == REDIS_INFO_FIELDS
    assert body == {
        "success": True,
        "data": {
            "total_sessions": 1,  # bob's login replaced alice's session on this client
            "redis_available": True,
            "mode": "redis",
            "redis_sessions": 1,
            "memory_sessions": 0,
        },
    }


def test_health_shape(client: TestClient) -> None:
    """/api/health/redis has exactly the documented fields and answers 200 when healthy."""
    login(client)
    response = client.get("/api/health/redis")
    assert response.status_code == 200
    body = response.json()
    latency = body["data"].pop("latency_ms")
    assert set(body["data"].pop("redis_info")) == REDIS_INFO_FIELDS
    assert isinstance(latency, float)
    assert latency >= 0
    assert body == {
        "success": True,
        "data": {
            "status": "healthy",
            "message": "Redis connection OK",
            "session_count": 1,
            "mode": "redis",
            "last_error": None,
        },
    }


def test_healthz(client: TestClient) -> None:
    """The liveness endpoint answers 200."""
    assert client.get("/healthz").json() == {"success": True, "data": {"status": "ok"}}


def _other_codec_cookie() -> str:
    codec = TokenCodec(b"some-other-deployment-secret-key")
    return codec.cookie_value(codec.new_token())


@pytest.mark.parametrize(
    "make_cookie",
    [
        pytest.param(lambda c: c[:-2] + ("AA" if not c.endswith("AA") else "BB"), id="tampered"),
        pytest.param(lambda c: c[: len(c) // 2], id="truncated"),
        pytest.param(lambda c: _other_codec_cookie(), id="foreign"),
        pytest.param(lambda c: "%%%not-a-cookie%%%", id="garbage"),
        pytest.param(lambda c: "A" * 4000, id="huge"),
    ],
)
def test_bad_cookies_get_401_and_change_nothing(
    client: TestClient, topology: Topology, make_cookie: Callable[[str], str]
) -> None:
    """Tampered, truncated, foreign, garbage and huge cookies get 401; stored data is intact."""
    good = login(client)
    before = sorted(topology.keys())
    client.cookies.clear()
    response = client.get("/api/auth/me", headers=as_session(make_cookie(good)))
    assert response.status_code == 401
    assert response.json()["success"] is False
    assert response.json()["error"]["message"]
    assert sorted(topology.keys()) == before
    assert client.get("/api/auth/me", headers=as_session(good)).status_code == 200


def test_no_cookie_is_401(client: TestClient) -> None:
    """Without a cookie, me and extend say to log in."""
    for response in (client.get("/api/auth/me"), client.post("/api/session/extend")):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b"{not json", {"content-type": "application/json"}, 400, "invalid_json"),
        (b"\xff\xfe", {"content-type": "application/json"}, 400, "invalid_json"),
        (b"[1, 2]", {"content-type": "application/json"}, 422, "validation_error"),
        (
            b'{"username": 5, "password": "x"}',
            {"content-type": "application/json"},
            422,
            "validation_error",
        ),
        (b'{"username": "alice"}', {"content-type": "application/json"}, 422, "validation_error"),
        (
            b'{"username": "", "password": "x"}',
            {"content-type": "application/json"},
            422,
            "validation_error",
        ),
        (
            b'{"username": null, "password": "x"}',
            {"content-type": "application/json"},
            422,
            "validation_error",
        ),
        (
            b"username=alice",
            {"content-type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
        ),
        (
            b'{"username": "' + b"a" * 70_000 + b'"}',
            {"content-type": "application/json"},
            413,
            "body_too_large",
        ),
    ],
)
def test_bad_login_bodies_are_4xx(
    client: TestClient, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    """Malformed, mistyped, incomplete, wrongly typed and oversized bodies get a clear 4xx."""
    response = client.post("/api/auth/login", content=body, headers=headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]


def test_validation_errors_name_the_field(client: TestClient) -> None:
    """A wrongly typed field is named in the message, with the type it had."""
    response = client.post("/api/auth/login", json={"username": "alice", "password": 12})
    assert response.json()["error"]["message"] == "field 'password' must be a string, not int"


def test_oversized_body_without_content_length_is_413(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    """A streamed (chunked) body over the limit is cut off with 413 too."""
    client = make_client(redis_url, server={"MAX_BODY_BYTES": 100})

    def chunks() -> object:
        yield b'{"username": "'
        for _ in range(10):
            yield b"a" * 50
        yield b'"}'

    response = client.post(
        "/api/auth/login", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_unknown_route_and_method_are_json(client: TestClient) -> None:
    """404 and 405 come back in the error envelope too."""
    missing = client.get("/api/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = client.get("/api/auth/login")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


def test_admin_endpoint_needs_the_key(client: TestClient) -> None:
    """The admin config endpoint wants a bearer key: none is 401, a wrong one 403."""
    assert client.get("/api/admin/config").status_code == 401
    wrong = client.get("/api/admin/config", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    right = client.get("/api/admin/config", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert right.status_code == 200
    config = right.json()["data"]
    assert config["SECRET_KEY"] == "***"
    assert config["ADMIN"]["API_KEYS"] == ["***"]
    assert all(u["PASSWORD_HASH"] == "***" for u in config["USERS"])
    assert ADMIN_KEY not in right.text


def test_redis_type_errors_are_a_clean_500(
    make_client: Callable[..., TestClient], topology: Topology
) -> None:
    """A corrupted key (wrong type) is reported as a JSON 500 without a stack trace."""
    # The corruption goes around SessionHub, so no cache hears of it: every read goes to Redis.
    session = {"TYPE": "redis", "REFRESH_THRESHOLD": 0}
    client = make_client(None, session=session, redis=topology.redis)
    cookie = login(client)
    hub = client.app.state.hub  # type: ignore[attr-defined]
    storage_id = hub.manager.storage_id_for_cookie(cookie)
    key = hub.manager.core.redis_ops.keys.session(storage_id)
    raw = topology.router()
    raw.delete(key)
    raw.set(key, "corrupt")
    response = client.get("/api/auth/me")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "Traceback" not in response.text


def test_no_cookie_or_token_reaches_redis(client: TestClient, topology: Topology) -> None:
    """After logins over HTTP, neither a cookie nor its token appears anywhere in Redis."""
    cookies = []
    for user in ("alice", "bob", "alice"):
        cookies.append(login(client, user))
        client.cookies.clear()
    stored = b"\n".join(topology.every_string())
    assert stored
    for cookie in cookies:
        token = cookie.split(".")[0]
        assert token.encode() not in stored
        assert cookie.encode() not in stored


def test_a_service_stopped_right_after_it_started_stops(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    """Starting and at once stopping the service (no request in between) never hangs shutdown,
    even when it cuts the message channel's subscription short."""
    import threading

    def cycles() -> None:
        for _ in range(10):
            with TestClient(create_app(service_settings(redis_url))):
                pass

    worker = threading.Thread(target=cycles, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "shutdown hung"
