"""The login throttle as a library feature: Redis and memory agree, and memory stays bounded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers import Clock, build_settings
from sessionhub.exceptions import TooManyAttemptsError
from sessionhub.hub import SessionHub
from sessionhub.throttle import LoginThrottle


@pytest.fixture
def hubs(redis_url: str) -> Iterator[dict[str, SessionHub]]:
    """A hub on the test Redis and a memory-only one, each with its own test clock."""
    made = {"redis": SessionHub(build_settings(redis_url)), "memory": SessionHub(build_settings())}
    for hub in made.values():
        hub.manager.core.clock = Clock()
    yield made
    for hub in made.values():
        hub.close()


def outcome(hub: SessionHub, username: str, ip: str) -> str:
    """``ok``, or ``<retry after> <scope>`` when the attempt is refused."""
    try:
        hub.run(hub.features.login_throttle.attempt(username, ip))
    except TooManyAttemptsError as exc:
        return f"{exc.retry_after} {exc.scope}"
    return "ok"


def test_redis_and_memory_answer_alike(hubs: dict[str, SessionHub]) -> None:
    """The Lua script and the in-memory table give the same answers to the same history."""
    answers: dict[str, list[str]] = {}
    for name, hub in hubs.items():
        manager = hub.manager
        throttle = LoginThrottle(
            manager.core,
            manager.user_keys,
            manager.codec.address_id,
            max_attempts=2,
            max_attempts_per_ip=3,
        )
        hub.features.login_throttle = throttle
        clock = hub.manager.core.clock
        assert isinstance(clock, Clock)
        seen = [outcome(hub, "alice", "a") for _ in range(4)]
        clock.ms += 150_250
        seen += [outcome(hub, "bob", "a"), outcome(hub, "bob", "a"), outcome(hub, "carol", "a")]
        seen.append(outcome(hub, "alice", "b"))
        hub.run(throttle.succeeded("alice", "b"))  # clears its counter, gives the address one back
        seen += [outcome(hub, "alice", "b") for _ in range(3)]
        clock.ms += 150_000
        seen += [outcome(hub, "bob", "a"), outcome(hub, "carol", "a")]
        answers[name] = seen
    assert answers["redis"] == answers["memory"]
    assert answers["redis"] == [
        "ok",
        "ok",
        "300 username from this address",
        "300 username from this address",
        "ok",
        "150 address",
        "150 address",
        "ok",
        "ok",
        "ok",
        "300 username from this address",
        "ok",
        "ok",
    ]


def test_memory_table_is_bounded(hubs: dict[str, SessionHub]) -> None:
    """Past its size the table drops ended windows first, then the oldest live one."""
    hub = hubs["memory"]
    clock = hub.manager.core.clock
    assert isinstance(clock, Clock)
    hub.features.login_throttle = LoginThrottle(
        hub.manager.core,
        hub.manager.user_keys,
        hub.manager.codec.address_id,
        max_attempts=1,
        max_attempts_per_ip=0,
        local_max=3,
    )
    assert outcome(hub, "alice", "old") == "ok"
    clock.ms += 300_000  # its window has ended: the first to go
    assert [outcome(hub, "alice", ip) for ip in ("a", "b", "c")] == ["ok"] * 3
    assert [outcome(hub, "alice", ip) for ip in ("a", "b", "c")] == [
        "300 username from this address"
    ] * 3
    assert outcome(hub, "alice", "d") == "ok"  # the table is full: "a" is dropped
    assert outcome(hub, "alice", "a") == "ok"
    assert outcome(hub, "alice", "c") == "300 username from this address"
