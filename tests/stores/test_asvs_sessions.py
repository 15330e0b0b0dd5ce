"""ASVS V7 in the library: freshness, re-authentication, remember me and revoking on a change."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from helpers import Clock
from sessionhub.config import Settings
from sessionhub.exceptions import InvalidInputError, ReauthRequiredError
from sessionhub.hub import SessionHub

EXPIRES = 60
REMEMBER = {"EXPIRES": EXPIRES, "REMEMBER_EXPIRES": 600, "REMEMBER_ABSOLUTE_LIFETIME": 3600}


@pytest.fixture(params=["redis", "memory"])
def hub(
    request: pytest.FixtureRequest, redis_url: str, make_settings: Callable[..., Settings]
) -> Iterator[SessionHub]:
    """A blocking hub on Redis, or memory-only, with a test clock on its core."""
    url = redis_url if request.param == "redis" else None
    hub = SessionHub(make_settings(url, session=REMEMBER))
    hub.manager.core.clock = Clock()
    try:
        yield hub
    finally:
        hub.close()


def advance(hub: SessionHub, seconds: int) -> None:
    clock = hub.manager.core.clock
    assert isinstance(clock, Clock)
    clock.ms += seconds * 1000


def reason(hub: SessionHub, cookie: str, max_age: int, level: str | None = None) -> str | None:
    """Why ``require_fresh`` refuses the session ``cookie`` names (``None``: it passes)."""
    session = hub.open(cookie, touch=False)
    assert session is not None
    try:
        hub.require_fresh(session, max_age, level)
    except ReauthRequiredError as exc:
        refused = exc
    else:
        return None
    assert refused.body()["error"] == {
        "code": "reauth_required",
        "message": str(refused),
        "reason": refused.reason,
        "max_age": max_age,
        "level": level,
    }
    return refused.reason


def test_a_login_records_when_and_how(hub: SessionHub) -> None:
    """A login is fresh at its own level and weaker ones, stale once max_age has passed."""
    session, cookie = hub.login("alice", auth_level="password")
    assert session.record.authenticated_ms == hub.manager.core.clock()
    assert reason(hub, cookie, 30) is None
    assert reason(hub, cookie, 30, "password") is None
    assert reason(hub, cookie, 30, "mfa") == "level"
    advance(hub, 31)
    assert reason(hub, cookie, 30) == "stale"
    assert reason(hub, cookie, 60, "password") is None


def test_an_anonymous_session_is_never_fresh(hub: SessionHub) -> None:
    """A session without a user must log in, whatever the max age; unknown levels are a bug."""
    session, cookie = hub.create(data={"cart": [1]})
    assert reason(hub, cookie, 3600) == "not_authenticated"
    with pytest.raises(InvalidInputError, match="unknown authentication level"):
        hub.require_fresh(session, 60, "retina")
    with pytest.raises(InvalidInputError):
        hub.reauthenticate(session)


def test_reauthenticate_issues_a_new_token_and_keeps_the_data(hub: SessionHub) -> None:
    """Re-authenticating moves the data to a new token, fresh at the new level; the old token
    opens nothing (V7.2.4)."""
    session, cookie = hub.login("alice", auth_level="password")
    session["cart"] = ["book"]
    assert hub.save(session)
    advance(hub, 45)
    assert reason(hub, cookie, 30) == "stale"
    _, new_cookie = hub.reauthenticate(session, level="mfa")
    assert new_cookie != cookie
    assert hub.open(cookie) is None
    reopened = hub.open(new_cookie)
    assert reopened is not None
    assert dict(reopened) == {"cart": ["book"]}
    assert reopened.user_id == "alice"
    assert reason(hub, new_cookie, 30, "mfa") is None


def test_regenerate_keeps_the_login_time(hub: SessionHub) -> None:
    """A token rotation that is not a login does not make a session fresh again."""
    session, _ = hub.login("alice", auth_level="mfa", remember=True)
    advance(hub, 45)
    moved, cookie = hub.regenerate(session)
    assert reason(hub, cookie, 30) == "stale"
    assert moved.record.auth_level == "mfa"
    assert moved.record.remember


def test_remember_me_has_its_own_idle_timeout_and_lifetime(hub: SessionHub) -> None:
    """A remembered session outlives SESSION.EXPIRES idle, slides by REMEMBER_EXPIRES, and ends at
    REMEMBER_ABSOLUTE_LIFETIME; an ordinary one idles out."""
    _, plain = hub.login("alice")
    remembered, kept = hub.login("alice", remember=True)
    assert remembered.record.absolute_expires_ms == hub.manager.core.clock() + 3600 * 1000
    advance(hub, EXPIRES + 1)
    assert hub.open(plain) is None
    for _ in range(7):  # active every 9 minutes: each slides it, up to the hour
        assert hub.open(kept) is not None
        advance(hub, 540)
    assert hub.open(kept) is None  # past the absolute lifetime, however active
    listed = hub.user_sessions.list("alice")
    assert listed == []


def test_remember_flag_is_listed(hub: SessionHub) -> None:
    """The user's session list says which sessions were remembered."""
    hub.login("alice")
    hub.login("alice", remember=True)
    views = [info.view() for info in hub.user_sessions.list("alice")]
    assert sorted(v["remember"] for v in views) == [False, True]
    assert all(v["authenticated_at"] for v in views)


def test_credentials_changed_ends_every_other_session(hub: SessionHub) -> None:
    """The hook for a password or factor change ends the user's other sessions only."""
    here, cookie = hub.login("alice")
    _, other = hub.login("alice", remember=True)
    _, bobs = hub.login("bob")
    assert hub.credentials_changed("alice", keep=here.storage_id) == 1
    assert hub.open(other) is None
    assert hub.open(cookie) is not None
    assert hub.open(bobs) is not None
    assert hub.revoke_all("alice", "account_disabled") == 1
    assert hub.open(cookie) is None


def test_remembered_sessions_use_their_own_count_buckets(
    redis_url: str, make_settings: Callable[..., Settings]
) -> None:
    """A remembered session is counted in buckets a sixtieth of REMEMBER_EXPIRES wide, moved on
    a slide and taken out on logout, so the counts stay exact and the bucket hash small."""
    hub = SessionHub(make_settings(redis_url, session=REMEMBER))
    clock = Clock()
    hub.manager.core.clock = clock
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        ops = hub.manager.core.redis_ops
        assert ops is not None
        assert ops.remember_bucket_ms == 600 * 1000 // 60
        session, cookie = hub.login("alice", remember=True)
        counts = client.hgetall(ops.keys.counts_of(session.storage_id))
        expiry = session.record.expires_ms
        width = ops.remember_bucket_ms
        assert counts == {str(-(-expiry // width) * width): "1"}
        clock.ms += 300 * 1000
        assert hub.open(cookie) is not None  # slides across buckets of its own width
        assert sum(map(int, client.hgetall(ops.keys.counts_of(session.storage_id)).values())) == 1
        assert hub.stats()["redis_sessions"] == 1
        hub.destroy(session.storage_id)
        assert client.hgetall(ops.keys.counts_of(session.storage_id)) == {}
    finally:
        client.close()
        hub.close()
