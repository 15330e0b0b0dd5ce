"""Login throttling over HTTP, on Redis and with redis-server killed (degraded mode)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis.crc import key_slot
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from helpers import PASSWORD, Clock, service_settings
from redis_server import RedisServer
from sessionhub.service.app import create_app

HERE, ELSEWHERE = "203.0.113.7", "198.51.100.9"
WINDOW = 300


class Service:
    """A started service whose requests come from the address each call names."""

    def __init__(self, redis_url: str | None, **sections: Any) -> None:
        self.app = create_app(service_settings(redis_url, **sections))
        self.http = TestClient(self._from_address, raise_server_exceptions=False)
        self.http.__enter__()
        self.hub = self.app.state.hub
        self.clock = Clock()
        self.hub.manager.core.clock = self.clock

    async def _from_address(self, scope: Scope, receive: Receive, send: Send) -> None:
        # TestClient gives every request one fixed peer; the throttle keys on the peer address.
        if scope["type"] == "http":
            ip = dict(scope["headers"]).get(b"x-test-peer", HERE.encode()).decode()
            scope = {**scope, "client": (ip, 50000)}
        await self.app(scope, receive, send)

    def login(
        self, username: str = "alice", password: str = PASSWORD, ip: str = HERE
    ) -> httpx.Response:
        self.http.cookies.clear()
        return self.http.post(
            "/api/auth/login",
            json={"username": username, "password": password},
            headers={"x-test-peer": ip},
        )

    def fail(self, times: int, username: str = "alice", ip: str = HERE) -> list[int]:
        return [self.login(username, "wrong", ip).status_code for _ in range(times)]

    def close(self) -> None:
        self.http.__exit__(None, None, None)


@pytest.fixture(params=["redis", "degraded"])
def service(request: pytest.FixtureRequest, fresh_redis_server: RedisServer) -> Iterator[Any]:
    """Factory of services on a private Redis; ``degraded``: that Redis is killed at once."""
    made: list[Service] = []

    def make(**sections: Any) -> Service:
        svc = Service(fresh_redis_server.url, redis={"PROBE_INTERVAL": 60}, **sections)
        made.append(svc)
        if request.param == "degraded":
            fresh_redis_server.kill()
            svc.login("bob", ip="192.0.2.1")  # finds Redis gone: degraded from here
            assert svc.hub.manager.core.mode == "degraded"
        return svc

    yield make
    for svc in made:
        svc.close()


def assert_locked(response: httpx.Response, retry_after: int, scope: str) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == str(retry_after)
    error = response.json()["error"]
    assert error["code"] == "too_many_attempts"
    assert f"for this {scope} within {WINDOW} s; retry in {retry_after} s" in error["message"]


def test_lockout_after_max_failures(service: Any) -> None:
    """Five wrong passwords answer 401; then even the right one gets 429 with Retry-After."""
    svc = service()
    assert svc.fail(5) == [401] * 5
    assert_locked(svc.login(), WINDOW, "username from this address")
    svc.clock.ms += 100_500
    assert_locked(svc.login(), WINDOW - 100, "username from this address")


def test_locked_user_still_logs_in_from_another_address(service: Any) -> None:
    """A lockout earned from one address refuses that address only, not the user elsewhere."""
    svc = service()
    assert svc.fail(5, ip=ELSEWHERE) == [401] * 5
    assert svc.login(ip=ELSEWHERE).status_code == 429
    assert svc.login(ip=HERE).status_code == 200
    assert svc.login("bob", ip=ELSEWHERE).status_code == 200


def test_success_clears_the_counter(service: Any) -> None:
    """A right password forgets the earlier failures of that username from that address."""
    svc = service()
    assert svc.fail(4) == [401] * 4
    assert svc.login().status_code == 200
    assert svc.fail(5) == [401] * 5
    assert svc.login().status_code == 429


def test_per_address_limit_stops_spraying_usernames(service: Any) -> None:
    """One address guessing at many usernames is stopped by the looser per-address limit."""
    svc = service(auth={"MAX_ATTEMPTS_PER_IP": 8})
    assert [svc.login(f"user{i}", "wrong").status_code for i in range(8)] == [401] * 8
    assert_locked(svc.login("user8", "wrong"), WINDOW, "address")
    assert_locked(svc.login("alice"), WINDOW, "address")
    assert svc.login("alice", ip=ELSEWHERE).status_code == 200


def test_successes_do_not_count_against_the_address(service: Any) -> None:
    """Many users logging in right from one address (an office behind NAT) are never throttled."""
    svc = service(auth={"MAX_ATTEMPTS_PER_IP": 3})
    assert svc.fail(2, "bob") == [401] * 2
    assert [svc.login().status_code for _ in range(10)] == [200] * 10
    assert svc.fail(1, "bob") == [401]
    assert svc.login("bob").status_code == 429


def test_window_ends_and_logins_work_again(service: Any) -> None:
    """Once the window after the first failure has passed, the locked address may log in."""
    svc = service()
    assert svc.fail(5) == [401] * 5
    svc.clock.ms += (WINDOW - 1) * 1000
    assert_locked(svc.login(), 1, "username from this address")
    svc.clock.ms += 1000
    assert svc.login().status_code == 200


def test_lockout_is_logged_once_without_the_username(
    service: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The first refusal logs a warning naming the address and a digest, never the username."""
    svc = service()
    caplog.set_level("WARNING", logger="sessionhub.auth")
    svc.fail(5, "carol@example.com")
    for _ in range(3):
        assert svc.login("carol@example.com", "wrong").status_code == 429
    lines = [r.getMessage() for r in caplog.records if r.name == "sessionhub.auth"]
    assert len(lines) == 1, lines
    assert HERE in lines[0]
    assert "carol" not in lines[0]
    assert svc.hub.manager.codec.address_id(HERE) not in lines[0]  # no key names either


def test_no_address_is_kept_in_clear(service: Any, fresh_redis_server: RedisServer) -> None:
    """Neither Redis nor the memory table (degraded) holds a client address or username in clear."""
    svc = service()
    assert svc.fail(2, "dave", ip=ELSEWHERE) == [401] * 2
    if svc.hub.manager.core.mode == "degraded":
        held = list(svc.hub.features.login_throttle._local)
    else:
        raw = fresh_redis_server.client()
        held = [k.decode() for k in raw.scan_iter("*login*")]
        raw.close()
    address_id = svc.hub.manager.codec.address_id(ELSEWHERE)
    assert sum(f"{{ip:{address_id}}}" in key for key in held) == 2, held
    assert not any(ELSEWHERE in key or "dave" in key for key in held), held


def test_zero_limits_disable_throttling(service: Any) -> None:
    """With both limits 0, wrong passwords are only ever answered 401."""
    svc = service(auth={"MAX_ATTEMPTS": 0, "MAX_ATTEMPTS_PER_IP": 0})
    assert svc.fail(12) == [401] * 12
    assert svc.login().status_code == 200


def test_keys_carry_hash_tags_and_expire(fresh_redis_server: RedisServer) -> None:
    """Both counters of an address share its slot, hide address and username, and expire."""
    svc = Service(fresh_redis_server.url)
    try:
        user = "{mallory}@example.com"
        assert svc.fail(1, user) == [401]
        raw = fresh_redis_server.client()
        keys = sorted(k.decode() for k in raw.scan_iter("*login*"))
        assert len(keys) == 2, keys
        address_id = svc.hub.manager.codec.address_id(HERE)
        assert keys[0] == f"session:{{ip:{address_id}}}:login"
        assert not any(HERE in key for key in keys)
        assert keys[1].startswith(keys[0] + ":")
        assert "mallory" not in keys[1]
        assert key_slot(keys[0].encode()) == key_slot(keys[1].encode())
        for key in keys:
            assert 0 < raw.pttl(key) <= WINDOW * 1000
            assert raw.hgetall(key) == {b"n": b"1", b"e": str(Clock().ms + WINDOW * 1000).encode()}
        assert svc.login(user.replace("mallory", "alice")).status_code == 401
        assert svc.login().status_code == 200
        assert raw.exists(keys[1]) == 1  # another username's counter: untouched
        raw.close()
    finally:
        svc.close()


def test_instances_of_one_redis_share_the_count(fresh_redis_server: RedisServer) -> None:
    """Failures counted by one instance count on another: spreading guesses over them gains
    nothing."""
    a, b = Service(fresh_redis_server.url), Service(fresh_redis_server.url)
    try:
        assert a.fail(3) + b.fail(2) == [401] * 5
        assert_locked(a.login(), WINDOW, "username from this address")
        assert_locked(b.login(), WINDOW, "username from this address")
    finally:
        a.close()
        b.close()
