"""Hostile input gets a clear 4xx before it reaches Redis: deep JSON, bad ids, odd text."""

from __future__ import annotations

import pytest
from sessioncookie import as_session
from starlette.testclient import TestClient

from helpers import login

JSON = {"content-type": "application/json"}
TOO_BIG_ID = "99999999999999999999-0"


@pytest.mark.parametrize("path", ["/api/auth/login", "/api/me/settings"])
def test_deeply_nested_json_is_400(client: TestClient, path: str) -> None:
    """About 2 KB of nested arrays is a 400 json_too_deep on login and settings, not a crash."""
    cookie = login(client)
    body = b'{"custom": {"a": ' + b"[" * 1000 + b"]" * 1000 + b"}}"
    method = "POST" if path.endswith("login") else "PATCH"
    response = client.request(method, path, content=body, headers={**JSON, **as_session(cookie)})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "json_too_deep"


@pytest.mark.parametrize(
    "body",
    [b'{"username": "a\\ud800", "password": "x"}', b'{"username": NaN, "password": "x"}'],
    ids=["lone-surrogate", "nan"],
)
def test_text_json_cannot_carry_is_400(client: TestClient, body: bytes) -> None:
    """A lone UTF-16 surrogate or NaN is refused as invalid JSON with a message saying why."""
    response = client.post("/api/auth/login", content=body, headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("cursor", [TOO_BIG_ID, "1-99999999999999999999", "²-0", "x", "1-"])
def test_cursor_that_is_no_message_id_is_400(client: TestClient, cursor: str) -> None:
    """An out-of-range or malformed cursor is a 400 naming 'cursor', never a 500 from Redis."""
    login(client)
    response = client.get("/api/me/messages", params={"cursor": cursor})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_message_id"
    assert "'cursor'" in error["message"]


def test_largest_message_ids(client: TestClient) -> None:
    """A part at 2**64 - 1 is still a message id (an empty page); the very last id, which Redis
    cannot read after, is a 400 rather than a 500."""
    login(client)
    top = 2**64 - 1
    response = client.get("/api/me/messages", params={"cursor": f"{top}-{top - 1}"})
    assert response.status_code == 200
    assert response.json()["data"]["messages"] == []
    assert client.get("/api/me/messages", params={"cursor": f"{top}-{top}"}).status_code == 400


@pytest.mark.parametrize("last", [TOO_BIG_ID, f"{2**64 - 1}-{2**64 - 1}", "nope", "-1-0"])
def test_bad_last_event_id_is_400_before_the_stream(
    client: TestClient, caplog: pytest.LogCaptureFixture, last: str
) -> None:
    """An unusable Last-Event-ID header (or query) answers 400 as JSON and logs no error; no
    stream starts."""
    login(client)
    response = client.get("/api/me/messages/stream", headers={"Last-Event-ID": last})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_message_id"
    assert "Last-Event-ID" in response.json()["error"]["message"]
    query = client.get("/api/me/messages/stream", params={"last_event_id": last})
    assert query.status_code == 400
    assert "'last_event_id'" in query.json()["error"]["message"]
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_mark_read_with_out_of_range_ids_is_422(client: TestClient) -> None:
    """Ids in a body are checked like those in a query: out of range is named, not sent on."""
    login(client)
    response = client.post("/api/me/messages/read", json={"ids": ["1-0", TOO_BIG_ID]})
    assert response.status_code == 422
    assert "field 'ids[1]'" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("query", "name"),
    [("limit=0", "limit"), ("limit=abc", "limit"), ("unread=perhaps", "unread")],
)
def test_bad_query_parameters_are_named(client: TestClient, query: str, name: str) -> None:
    """A query parameter out of range or of the wrong type is a 422 naming it."""
    login(client)
    response = client.get(f"/api/me/messages?{query}")
    assert response.status_code == 422
    assert f"query parameter '{name}'" in response.json()["error"]["message"]


def test_unknown_settings_field_and_wrong_types_are_each_named(client: TestClient) -> None:
    """Settings of the wrong shape name every bad field, as the library's own checks do."""
    login(client)
    response = client.patch("/api/me/settings", json={"custom": {"k" * 65: 1}, "theme": 3})
    assert response.status_code == 422
    assert set(response.json()["error"]["fields"]) == {"custom", "theme"}
