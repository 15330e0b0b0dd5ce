"""Message push over HTTP and in the library: send, list, read, authorization, SSE, degraded."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from liveserver import Server
from sessioncookie import as_session
from starlette.testclient import TestClient

from helpers import ADMIN_KEY, build_settings, device, login, wait_for
from redis_server import RedisServer
from sessionhub.exceptions import InvalidMessageError
from sessionhub.hub import AsyncSessionHub, SessionHub

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _messages(client: TestClient, cookie: str, query: str = "") -> dict[str, Any]:
    response = client.get(f"/api/me/messages{query}", headers=as_session(cookie))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def test_send_list_read_and_inboxes_are_separate(client: TestClient) -> None:
    """A direct and an admin message reach only the recipient's inbox, which pages by cursor and
    marks messages read by id or up to an id."""
    alice = device(client, "alice")
    bob = device(client, "bob")
    sent = client.post(
        "/api/messages", json={"to": "bob", "body": {"text": "hi"}}, headers=as_session(alice)
    )
    assert sent.status_code == 201, sent.text
    admin = client.post("/api/users/bob/messages", json={"body": "from ops"}, headers=ADMIN)
    assert admin.status_code == 201
    # Each user has their own inbox (the seed shared one list).
    assert _messages(client, alice)["messages"] == []
    inbox = _messages(client, bob)["messages"]
    assert [(m["from"], m["kind"], m["body"]) for m in inbox] == [
        ("alice", "direct", {"text": "hi"}),
        (None, "admin", "from ops"),
    ]
    first, second = inbox[0]["id"], inbox[1]["id"]
    page = _messages(client, bob, "?limit=1")
    assert page["next_cursor"] == first
    assert [m["id"] for m in _messages(client, bob, f"?cursor={first}")["messages"]] == [second]
    read = client.post("/api/me/messages/read", json={"ids": [second]}, headers=as_session(bob))
    assert read.status_code == 200
    unread = _messages(client, bob, "?unread=true")["messages"]
    assert [m["id"] for m in unread] == [first]
    client.post("/api/me/messages/read", json={"up_to": first}, headers=as_session(bob))
    assert _messages(client, bob, "?unread=true")["messages"] == []
    assert all(m["read"] for m in _messages(client, bob)["messages"])


def test_validation_rate_limit_and_authorization(
    make_client: Callable[..., TestClient], redis_url: str
) -> None:
    """Bad sends get 422 or 404 and sends past the rate limit 429; routes need a cookie or the
    admin key, and a user can neither see nor mark another user's messages."""
    client = make_client(redis_url, messages={"SEND_RATE": 2, "MAX_BODY_BYTES": 64})
    alice = device(client, "alice")
    bob = device(client, "bob")
    send = {"headers": as_session(alice)}
    assert client.post("/api/messages", json={"to": "bob"}, **send).status_code == 422
    assert client.post("/api/messages", json={"to": "nobody", "body": 1}, **send).status_code == 404
    big = client.post("/api/messages", json={"to": "bob", "body": "x" * 100}, **send)
    assert big.status_code == 422
    assert "body" in big.json()["error"]["message"]
    for _ in range(2):
        assert (
            client.post("/api/messages", json={"to": "bob", "body": 1}, **send).status_code == 201
        )
    limited = client.post("/api/messages", json={"to": "bob", "body": 1}, **send)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    # No cookie: 401; user cookie on admin routes: 401 (no key); bad key: 403.
    for method, path, body in [
        ("POST", "/api/messages", {"to": "bob", "body": 1}),
        ("GET", "/api/me/messages", None),
        ("POST", "/api/me/messages/read", {"up_to": "1-0"}),
        ("GET", "/api/me/messages/stream", None),
    ]:
        assert client.request(method, path, json=body).status_code == 401
    for path in ("/api/users/bob/messages", "/api/messages/broadcast"):
        assert client.post(path, json={"body": 1}).status_code == 401
        assert client.post(path, json={"body": 1}, headers=as_session(bob)).status_code == 401
        bad = {"Authorization": "Bearer wrong-key-wrong-key"}
        assert client.post(path, json={"body": 1}, headers=bad).status_code == 403
    # Alice never sees Bob's messages, and cannot mark them read.
    assert _messages(client, alice)["messages"] == []
    bobs = _messages(client, bob)["messages"]
    client.post("/api/me/messages/read", json={"up_to": bobs[-1]["id"]}, headers=as_session(alice))
    assert len(_messages(client, bob, "?unread=true")["messages"]) == 2
    bad_read = client.post("/api/me/messages/read", json={"ids": ["x"]}, headers=as_session(bob))
    assert bad_read.status_code == 422


def test_broadcast_reaches_online_users(client: TestClient) -> None:
    """An admin broadcast lands in every online user's inbox and reports how many it reached."""
    alice = device(client, "alice")
    bob = device(client, "bob")
    result = client.post("/api/messages/broadcast", json={"body": {"notice": 1}}, headers=ADMIN)
    assert result.json()["data"] == {"recipients": 2}
    for cookie in (alice, bob):
        assert [m["kind"] for m in _messages(client, cookie)["messages"]] == ["broadcast"]


def test_inbox_bounded(make_client: Callable[..., TestClient], redis_url: str) -> None:
    """An inbox is trimmed to MAX_PER_USER entries in Redis and still ends with the newest one."""
    client = make_client(redis_url, messages={"MAX_PER_USER": 10})
    bob = device(client, "bob")
    for i in range(500):
        client.post("/api/users/bob/messages", json={"body": i}, headers=ADMIN)
    hub = client.app.state.hub  # type: ignore[attr-defined]
    length = redis.Redis.from_url(redis_url).xlen(hub.manager.user_keys.inbox("bob"))
    assert length == 10
    last = _messages(client, bob, "?limit=500")["messages"][-1]
    assert last["body"] == 499


def test_retention_drops_old_messages(redis_url: str) -> None:
    """Messages past RETENTION are never listed and are trimmed from Redis on the next send."""
    hub = SessionHub(build_settings(redis_url, messages={"RETENTION": 1}))
    try:
        hub.inbox.send("ivy", "old")
        # Redis stamps a message's id with its own clock, which no test clock reaches: let a
        # second pass for real (a lower bound, so no margin to guess).
        time.sleep(1.1)
        assert hub.inbox.page("ivy")["messages"] == []  # past retention: never shown
        hub.inbox.send("ivy", "new")
        assert [m["body"] for m in hub.inbox.page("ivy")["messages"]] == ["new"]
        assert hub.client is not None
        assert hub.client.xlen(hub.manager.user_keys.inbox("ivy")) == 1  # and trimmed
    finally:
        hub.close()


def test_library_sync_and_async(redis_url: str) -> None:
    """Sync and async hubs send, page and mark read in one inbox, and a NaN body is refused."""
    settings = build_settings(redis_url)
    hub = SessionHub(settings)
    try:
        sent = hub.inbox.send("dave", {"a": 1}, sender="carol")
        page = hub.inbox.page("dave")
        assert [m["id"] for m in page["messages"]] == [sent["id"]]
        with pytest.raises(InvalidMessageError):
            hub.inbox.send("dave", float("nan"))
        hub.inbox.mark_read("dave", up_to=sent["id"])
        assert hub.inbox.page("dave", unread=True)["messages"] == []
    finally:
        hub.close()

    async def main() -> list[Any]:
        ahub = AsyncSessionHub(settings)
        try:
            await ahub.inbox.send("dave", "second")
            page = await ahub.inbox.page("dave", unread=True)
            return [m["body"] for m in page["messages"]]
        finally:
            await ahub.aclose()

    assert asyncio.run(main()) == ["second"]


# -- live stream over a real HTTP server -------------------------------------------------------


@pytest.fixture
def live(redis_url: str) -> Iterator[Server]:
    server = Server(redis_url, messages={"STREAM_KEEPALIVE": 0.5})
    yield server
    server.close()


def _read_events(
    response: httpx.Response,
    n: int,
    out: list[dict[str, Any]],
    subscribed: threading.Event | None = None,
) -> None:
    event: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith("retry: ") and subscribed is not None:
            subscribed.set()  # the server sends it once it listens for the user's messages
        elif line.startswith("id: "):
            event["id"] = line[4:]
        elif line.startswith("data: "):
            event["data"] = line[6:]
        elif line == "" and "data" in event:
            out.append({"id": event["id"], **json.loads(event["data"]), "at": time.monotonic()})
            event = {}
            if len(out) >= n:
                return


def test_stream_delivers_fast_and_resumes(live: Server) -> None:
    """The SSE stream delivers a new message while it is open (its latency is measured by
    bench/bench_push.py, not here), and a reconnect with Last-Event-ID gets the messages sent
    while it was away."""
    bob = live.login("bob")
    received: list[dict[str, Any]] = []
    with (
        httpx.Client(base_url=live.base, cookies={"session": bob}, timeout=10) as http,
        http.stream("GET", "/api/me/messages/stream") as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        subscribed = threading.Event()
        reader = threading.Thread(target=_read_events, args=(response, 1, received, subscribed))
        reader.start()
        assert subscribed.wait(10)  # the stream is open and waiting
        sent_at = time.monotonic()
        r = httpx.post(f"{live.base}/api/users/bob/messages", json={"body": "ping"}, headers=ADMIN)
        assert r.status_code == 201
        reader.join(timeout=5)
    assert received[0]["body"] == "ping"
    print(f"stream delivery latency: {(received[0]['at'] - sent_at) * 1000:.1f} ms")
    # Disconnected: two messages arrive meanwhile; a reconnect with Last-Event-ID gets both.
    for body in ("missed-1", "missed-2"):
        httpx.post(f"{live.base}/api/users/bob/messages", json={"body": body}, headers=ADMIN)
    resumed: list[dict[str, Any]] = []
    headers = {"Last-Event-ID": received[0]["id"]}
    with (
        httpx.Client(base_url=live.base, cookies={"session": bob}, timeout=10) as http,
        http.stream("GET", "/api/me/messages/stream", headers=headers) as response,
    ):
        _read_events(response, 2, resumed)
    assert [e["body"] for e in resumed] == ["missed-1", "missed-2"]


def test_degraded_messages_kept_and_flushed(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """While Redis is down, messages are kept and listed from memory, then flushed to Redis."""
    server = fresh_redis_server
    client = make_client(server.url, redis={"PROBE_INTERVAL": 0.2})
    hub = client.app.state.hub  # type: ignore[attr-defined]
    alice = device(client, "alice")
    bob = device(client, "bob")
    server.kill()
    sent = client.post(
        "/api/messages", json={"to": "bob", "body": "during"}, headers=as_session(alice)
    )
    assert sent.status_code == 201
    assert hub.manager.core.mode == "degraded"
    assert [m["body"] for m in _messages(client, bob)["messages"]] == ["during"]
    server.restart()
    wait_for(lambda: hub.manager.core.mode == "redis")
    entries = server.client().xrange(hub.manager.user_keys.inbox("bob"))
    assert [e[1][b"b"] for e in entries] == [b'"during"']
    assert login(client, "bob")
    assert [m["body"] for m in _messages(client, client.cookies["session"])["messages"]] == [
        "during"
    ]


def test_stream_keeps_delivering_while_degraded(fresh_redis_server: RedisServer) -> None:
    """Redis dies under an open stream: a message sent to this instance still arrives."""
    live = Server(
        fresh_redis_server.url, messages={"STREAM_KEEPALIVE": 0.5}, redis={"PROBE_INTERVAL": 0.2}
    )
    try:
        bob = live.login("bob")
        received: list[dict[str, Any]] = []
        with (
            httpx.Client(base_url=live.base, cookies={"session": bob}, timeout=10) as http,
            http.stream("GET", "/api/me/messages/stream") as response,
        ):
            reader = threading.Thread(target=_read_events, args=(response, 2, received))
            reader.start()
            httpx.post(
                f"{live.base}/api/users/bob/messages", json={"body": "before"}, headers=ADMIN
            )
            wait_for(lambda: len(received) == 1)
            fresh_redis_server.kill()
            during = httpx.post(
                f"{live.base}/api/users/bob/messages", json={"body": "during"}, headers=ADMIN
            )
            assert during.status_code == 201
            reader.join(timeout=5)
        assert [e["body"] for e in received] == ["before", "during"]
    finally:
        live.close()
