"""Encryption, freshness, remember me, revoking and SECRET_KEY rotation while Redis is really
down (killed, then restarted): the memory fallback keeps each of them as Redis does."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from helpers import (
    Clock,
    build_settings,
    every_string_in_redis,
    hub_factory,
    strings_held,
    wait_for,
)
from redis_server import RedisServer
from sessionhub.exceptions import InvalidTokenError, ReauthRequiredError

PROBE = 0.5
KEY = {"ID": "k1", "KEY": base64.b64encode(os.urandom(32)).decode()}
MARK = "Zq7-marker"
"""In every value a test stores: it must never be found in plain text where it is sealed."""
IP = "10.97.3.41"
EXPIRES = 60
LIFETIMES = {"EXPIRES": EXPIRES, "REMEMBER_EXPIRES": 600, "REMEMBER_ABSOLUTE_LIFETIME": 3600}
OLD_SECRET, NEW_SECRET = "old-secret-key-0123456789", "new-secret-key-0123456789"

MakeHub = Callable[..., Any]


@pytest.fixture
def server(make_redis_server: Callable[..., RedisServer]) -> RedisServer:
    """A private redis-server that the test kills; it keeps every acknowledged write (AOF,
    fsync always), so a restart brings back what the outage did not change."""
    return make_redis_server("--appendonly", "yes", "--appendfsync", "always")


@pytest.fixture(params=["sync", "async"])
def make_hub(request: pytest.FixtureRequest, server: RedisServer) -> Iterator[MakeHub]:
    """Factory of hubs (blocking, or asyncio from a loop thread) on ``server``; every read
    reaches Redis (no local cache), so each one meets the outage."""

    def settings(**sections: Any) -> Any:
        sections["session"] = {"REFRESH_THRESHOLD": 0, **sections.get("session", {})}
        sections["redis"] = {"PROBE_INTERVAL": PROBE, **sections.get("redis", {})}
        return build_settings(server.url, **sections)

    with hub_factory(request.param, settings) as make:
        yield make


def _marked(hub: Any) -> list[str]:
    """The texts of the hub's own objects (stores, mirrors, queues) that show MARK or IP."""
    target = getattr(hub, "_target", hub)  # the asyncio hub behind the test's blocking wrapper
    return [s[:80] for s in strings_held(target) if MARK in s or IP in s]


def _recovered(hub: Any) -> None:
    """Wait for traffic back on Redis and the revocation channel back: only copies read under it
    are served in the next outage."""
    core = hub.manager.core
    wait_for(lambda: core.mode == "redis" and core.coherence.up, timeout=30)


def _fill(hub: Any, user: str) -> tuple[Any, str]:
    """A session of ``user`` with marked data, agent and IP, marked settings and a marked
    message to ``user``; the session and its cookie."""
    session, cookie = hub.create(
        user, data={"note": f"{MARK} data"}, user_agent=f"{MARK} agent", ip=IP
    )
    hub.preferences.patch(user, {"custom": {"note": f"{MARK} settings"}})
    hub.inbox.send(user, {"text": f"{MARK} body"})
    return session, cookie


def _reads_back(hub: Any, user: str, cookie: str, extra: dict[str, str] | None = None) -> None:
    opened = hub.open(cookie)
    assert opened is not None
    assert dict(opened) == {"note": f"{MARK} data", **(extra or {})}
    assert (opened.record.user_agent, opened.record.ip) == (f"{MARK} agent", IP)
    assert hub.preferences.get(user)["custom"] == {"note": f"{MARK} settings"}
    bodies = [m["body"] for m in hub.inbox.page(user)["messages"]]
    assert bodies == [{"text": f"{MARK} body"}]
    listed = hub.user_sessions.list(user)
    assert [(s.record.user_agent, s.record.ip) for s in listed] == [(f"{MARK} agent", IP)]


@pytest.mark.parametrize("encrypted", [True, False])
def test_the_memory_fallback_holds_only_sealed_values(
    make_hub: MakeHub, server: RedisServer, encrypted: bool
) -> None:
    """With ENCRYPTION.KEYS, nothing the hub keeps in memory while Redis is down (sessions, their
    agent and IP, settings, messages, the queues for recovery) shows a stored value in plain
    text; everything reads back, and after recovery Redis holds it encrypted. Without keys the
    same walk finds the values, so the check can fail."""
    hub = make_hub(encryption={"KEYS": [KEY] if encrypted else []})
    _, alice = _fill(hub, "alice")  # while Redis is up: mirrored from Redis's replies
    _reads_back(hub, "alice", alice)
    server.kill()
    assert hub.open(alice) is not None
    assert hub.manager.core.mode == "degraded"
    _, bob = _fill(hub, "bob")  # during the outage: in memory only, queued for Redis
    opened = hub.open(alice)
    opened["more"] = f"{MARK} written in the outage"
    assert hub.save(opened)
    _reads_back(hub, "alice", alice, {"more": f"{MARK} written in the outage"})
    _reads_back(hub, "bob", bob)
    assert (_marked(hub) == []) == encrypted, _marked(hub)

    server.restart()
    _recovered(hub)
    client = server.client()
    try:
        dump = [s.decode(errors="replace") for s in every_string_in_redis(client)]
    finally:
        client.close()
    assert ([s for s in dump if MARK in s or IP in s] == []) == encrypted
    # A hub with nothing in memory reads it all from Redis.
    other = make_hub(encryption={"KEYS": [KEY] if encrypted else []})
    _reads_back(other, "alice", alice, {"more": f"{MARK} written in the outage"})
    _reads_back(other, "bob", bob)


def _reason(hub: Any, cookie: str, max_age: int, level: str | None = None) -> str | None:
    session = hub.open(cookie)
    assert session is not None
    try:
        hub.require_fresh(session, max_age, level)
    except ReauthRequiredError as exc:
        return exc.reason
    return None


def test_freshness_and_reauthentication_while_redis_is_down(
    make_hub: MakeHub, server: RedisServer
) -> None:
    """During an outage a login grows stale and too weak as it does on Redis; re-authenticating
    gives a new token (the old one dead), keeps the data, and recovery writes that to Redis."""
    hub = make_hub(encryption={"KEYS": [KEY]})
    clock = hub.manager.core.clock = Clock()
    _, cookie = hub.create("alice", data={"cart": [MARK]}, auth_level="password")
    assert hub.open(cookie) is not None
    server.kill()
    assert hub.open(cookie) is not None
    assert hub.manager.core.mode == "degraded"
    assert _reason(hub, cookie, 60) is None
    assert _reason(hub, cookie, 60, "mfa") == "level"
    clock.ms += 61_000
    assert _reason(hub, cookie, 60) == "stale"
    old = hub.open(cookie)
    _, new_cookie = hub.reauthenticate(old, level="mfa")
    assert new_cookie != cookie
    assert hub.open(cookie) is None
    assert _reason(hub, new_cookie, 60, "mfa") is None
    assert dict(hub.open(new_cookie)) == {"cart": [MARK]}

    server.restart()
    _recovered(hub)
    other = make_hub(encryption={"KEYS": [KEY]})
    other.manager.core.clock = clock
    assert other.open(cookie) is None
    assert _reason(other, new_cookie, 60, "mfa") is None
    opened = other.open(new_cookie)
    assert (opened.record.authenticated_ms, dict(opened)) == (clock.ms, {"cart": [MARK]})


def test_remember_me_lifetimes_while_redis_is_down(make_hub: MakeHub, server: RedisServer) -> None:
    """In memory, a remembered session (made before or during the outage) outlives the idle
    timeout that ends an ordinary one, slides by its own, stops at its own absolute lifetime,
    and reaches Redis on recovery still remembered."""
    hub = make_hub(session=LIFETIMES)
    clock = hub.manager.core.clock = Clock()
    _, before = hub.create("alice", remember=True)
    assert hub.open(before) is not None
    server.kill()
    assert hub.open(before) is not None
    assert hub.manager.core.mode == "degraded"
    _, during = hub.create("alice", remember=True)
    _, plain = hub.create("alice")
    clock.ms += (EXPIRES + 1) * 1000
    assert hub.open(plain) is None
    assert hub.open(before) is not None
    assert hub.open(during) is not None
    listed = hub.user_sessions.list("alice")
    assert [s.record.remember for s in listed] == [True, True]

    server.restart()
    _recovered(hub)
    other = make_hub(session=LIFETIMES)
    other.manager.core.clock = clock
    for cookie in (before, during):
        opened = other.open(cookie)
        assert opened is not None
        assert opened.record.remember
        assert opened.record.expires_ms == clock.ms + 600_000

    assert hub.open(during) is not None  # mirrored again from Redis
    server.kill()
    assert hub.open(during) is not None
    assert hub.manager.core.mode == "degraded"
    for _ in range(5):  # used every 590 s: never idle for REMEMBER_EXPIRES
        clock.ms += 590_000
        assert hub.open(during) is not None
    clock.ms += 590_000  # 3601 s after it was made: past REMEMBER_ABSOLUTE_LIFETIME
    assert hub.open(during) is None


def test_revoke_all_on_a_credential_change_while_redis_is_down(
    make_hub: MakeHub, server: RedisServer
) -> None:
    """credentials_changed during an outage ends every other session of the user this process
    knows, keeps the one that made the change and other users', and recovery removes the ended
    ones from Redis and the user's index."""
    hub = make_hub(encryption={"KEYS": [KEY]})
    _, first = hub.create("alice", user_agent="first")
    _, second = hub.create("alice", user_agent="second")
    _, bobs = hub.create("bob")
    for cookie in (first, second, bobs):
        assert hub.open(cookie) is not None  # seen by this process: mirrored in memory
    server.kill()
    assert hub.open(first) is not None
    assert hub.manager.core.mode == "degraded"
    here, here_cookie = hub.create("alice", user_agent="here")
    assert hub.credentials_changed("alice", keep=here.storage_id) == 2
    assert hub.open(first) is None
    assert hub.open(second) is None
    assert hub.open(here_cookie) is not None
    assert hub.open(bobs) is not None
    assert [s.record.user_agent for s in hub.user_sessions.list("alice")] == ["here"]

    server.restart()
    _recovered(hub)
    other = make_hub(encryption={"KEYS": [KEY]})
    assert other.open(first) is None
    assert other.open(second) is None
    assert other.open(here_cookie) is not None
    assert other.open(bobs) is not None
    assert [s.record.user_agent for s in other.user_sessions.list("alice")] == ["here"]


def test_a_fallback_secret_cookie_while_redis_is_down(
    make_hub: MakeHub, server: RedisServer
) -> None:
    """A session moved to the new SECRET_KEY before the outage is served from memory by its
    new and its old cookie and keeps what is written; a fallback cookie this process never saw
    finds no session (never an error) and is moved once Redis is back; once the fallback is
    dropped, both moved sessions still open and the old cookies are refused."""
    before = make_hub(secret_key=OLD_SECRET, encryption={"KEYS": [KEY]})
    _, used = before.create("alice", data={"n": 1})
    _, unseen = before.create("bob", data={"n": 2})
    during = make_hub(
        secret_key=NEW_SECRET, secret_key_fallbacks=[OLD_SECRET], encryption={"KEYS": [KEY]}
    )
    moved = during.open(used)
    assert moved is not None
    assert moved.reissued_cookie is not None
    used_now = moved.reissued_cookie
    server.kill()
    assert during.open(used_now) is not None
    assert during.manager.core.mode == "degraded"
    assert during.open(unseen) is None
    opened = during.open(used)
    assert opened is not None
    assert opened.storage_id == moved.storage_id
    opened["n"] = 10
    assert during.save(opened)
    assert dict(during.open(used_now)) == {"n": 10}

    server.restart()
    _recovered(during)
    late = during.open(unseen)
    assert late is not None
    assert dict(late) == {"n": 2}
    assert late.reissued_cookie is not None
    after = make_hub(secret_key=NEW_SECRET, encryption={"KEYS": [KEY]})
    assert dict(after.open(used_now)) == {"n": 10}
    assert dict(after.open(late.reissued_cookie)) == {"n": 2}
    for old_cookie in (used, unseen):
        with pytest.raises(InvalidTokenError):
            after.open(old_cookie)
