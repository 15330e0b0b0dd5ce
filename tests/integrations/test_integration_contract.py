"""One behavioural contract, run against every adapter and against the library directly, on
standalone Redis, Sentinel and Redis Cluster."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from contract_apps import ADAPTERS, Client, open_client

from helpers import build_settings, wait_for
from redis_server import RedisServer
from topology_fixtures import Topology, standalone

ADAPTER_NAMES = sorted(ADAPTERS)


def session_keys(topology: Topology) -> list[bytes]:
    """Every session hash in Redis, on every master (the index zsets are not sessions)."""
    return topology.keys("session:*:s:*")


@pytest.fixture(params=ADAPTER_NAMES)
def adapter(request: pytest.FixtureRequest) -> str:
    """The name of the adapter under test."""
    return str(request.param)


@pytest.fixture
def client(adapter: str, topology: Topology) -> Iterator[Client]:
    """A client of the contract app for ``adapter`` on each topology in turn."""
    with open_client(adapter, topology.settings()) as c:
        yield c


def test_empty_session_creates_nothing(client: Client, topology: Topology) -> None:
    """A request that stores nothing (a health check) gets no cookie and leaves no Redis key."""
    for route in ("ping", "read"):
        reply = client.call(route)
        assert reply.status == 200
        assert reply.set_cookies == []
    assert client.cookie is None
    assert session_keys(topology) == []


def test_create_and_read(client: Client, topology: Topology) -> None:
    """The first value stored creates the session; later requests read it back."""
    assert client.call("visits").body == {"visits": 1}
    assert client.cookie
    assert client.call("visits").body == {"visits": 2}
    assert client.call("read").body["data"]["visits"] == 2
    assert len(session_keys(topology)) == 1


def test_modify_one_key_writes_only_that_key(adapter: str, topology: Topology) -> None:
    """Changing one key leaves the others as the store has them, even if changed meanwhile."""
    # The other writer goes around SessionHub, so no cache would hear of it: read Redis each time.
    with open_client(adapter, topology.settings(session={"LOCAL_CACHE_SIZE": 0})) as client:
        _modify_one_key_writes_only_that_key(client, topology)


def _modify_one_key_writes_only_that_key(client: Client, topology: Topology) -> None:
    client.call("set", {"key": "a", "value": 1})
    client.call("set", {"key": "b", "value": 2})
    [key] = session_keys(topology)
    r = topology.router()
    try:
        r.hset(key, "d:b", "99")  # another writer changed b after this client read it
    finally:
        r.close()
    client.call("set", {"key": "a", "value": 3})
    assert client.call("read").body["data"] == {"a": 3, "b": 99}


def test_concurrent_requests_modifying_two_keys(client: Client) -> None:
    """Two overlapping requests on one session that set different keys both keep their key."""
    client.call("set", {"key": "base", "value": 0})
    other = client.clone()
    meeting = f"two-keys-{uuid.uuid4()}"
    errors: list[BaseException] = []

    def run(c: Client, key: str) -> None:
        try:
            # Each request waits, its session loaded, until the other has loaded it too.
            assert c.call("set", {"key": key, "value": key}, meet=meeting).status == 200
        except BaseException as exc:  # collected for the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(client, "left")),
        threading.Thread(target=run, args=(other, "right")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert client.call("read").body["data"] == {"base": 0, "left": "left", "right": "right"}


def test_regenerate_moves_data_to_a_new_token(client: Client) -> None:
    """Regenerating issues a new cookie with the same data; the old cookie opens nothing."""
    client.call("set", {"key": "cart", "value": [1, 2]})
    old = client.cookie
    client.call("regenerate", {})
    assert client.cookie
    assert client.cookie != old
    assert client.call("read").body["data"] == {"cart": [1, 2]}
    client.cookie = old
    assert client.call("read").body["data"] == {}


def test_login_binds_user_and_rotates_token(client: Client) -> None:
    """Logging in keeps the anonymous data, binds the user and never reuses the old token."""
    client.call("set", {"key": "cart", "value": ["book"]})
    anonymous = client.cookie
    assert client.call("login", {"username": "alice"}).status == 200
    assert client.cookie
    assert client.cookie != anonymous
    body = client.call("read").body
    assert body["user"] == "alice"
    assert body["data"]["cart"] == ["book"]


def test_logout_destroys_session_and_cookie(client: Client, topology: Topology) -> None:
    """Logging out deletes the session from Redis and clears the cookie."""
    client.call("login", {"username": "alice"})
    client.call("set", {"key": "x", "value": 1})
    cookie = client.cookie
    client.call("logout", {})
    assert client.cookie is None
    assert session_keys(topology) == []
    client.cookie = cookie
    assert client.call("read").body == {"data": {}, "user": None}


def test_expiry(adapter: str, topology: Topology) -> None:
    """A session idle for longer than EXPIRES is gone; the next visit starts again at 1."""
    settings = topology.settings(session={"EXPIRES": 1})
    with open_client(adapter, settings) as client:
        assert client.call("visits").body == {"visits": 1}
        wait_for(lambda: session_keys(topology) == [])  # Redis's own clock expires it
        assert client.call("visits").body == {"visits": 1}


def test_tampered_cookie_is_a_new_empty_session(client: Client) -> None:
    """A forged or garbled cookie gets an empty session (no error) and the real one survives."""
    client.call("set", {"key": "secret", "value": "s"})
    good = client.cookie
    assert good
    for forged in (good[:-2] + ("AA" if not good.endswith("AA") else "BB"), "garbage", "x" * 300):
        client.cookie = forged
        reply = client.call("read")
        assert reply.status == 200
        assert reply.body["data"] == {}
    client.cookie = good
    assert client.call("read").body["data"] == {"secret": "s"}


def test_redis_killed_and_restarted(adapter: str, fresh_redis_server: RedisServer) -> None:
    """Sessions keep working from memory while Redis is down and are back in Redis after."""
    url = fresh_redis_server.url
    with open_client(adapter, build_settings(url)) as client:
        assert client.call("visits").body == {"visits": 1}
        fresh_redis_server.kill()
        assert client.call("visits").body == {"visits": 2}
        newcomer = client.clone()
        newcomer.cookie = None
        assert newcomer.call("visits").body == {"visits": 1}
        fresh_redis_server.restart()
        stored = standalone(fresh_redis_server)
        wait_for(lambda: client.call("visits").status == 200 and len(session_keys(stored)) == 2)
        assert client.call("read").body["data"]["visits"] >= 3
        assert newcomer.call("visits").body == {"visits": 2}
