"""Two service instances on one real redis-server: what one destroys, the other never serves, and
what either serves after Redis comes back empty is listed, counted and revocable everywhere."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sessioncookie import as_session
from starlette.testclient import TestClient

from helpers import ADMIN_KEY, device, wait_for
from redis_server import RedisServer
from tcp_proxy import TcpProxy

PROBE = 0.5
SLIDES = {"REFRESH_THRESHOLD": 0}
"""Every read reaches Redis, so a read is what finds an instance cut off from it."""
ME = "/api/auth/me"


def status(client: TestClient, cookie: str) -> int:
    """The status ``GET /api/auth/me`` answers for ``cookie`` on ``client``'s instance."""
    return client.get(ME, headers=as_session(cookie)).status_code


def core_of(client: TestClient) -> Any:
    return client.app.state.hub.manager.core  # type: ignore[attr-defined]


def mirrored(client: TestClient, cookie: str) -> bool:
    """Whether ``client``'s instance holds a copy of the cookie's session in memory."""
    core = core_of(client)
    storage_id = client.app.state.hub.manager.storage_id_for_cookie(cookie)  # type: ignore[attr-defined]
    return core.memory.peek(storage_id, core.clock()) is not None


def healthy_and_linked(client: TestClient) -> bool:
    """Redis serves the instance again and its revocation subscription is back."""
    return client.get("/api/health/redis").status_code == 200 and core_of(client).coherence.up


def handle_of(client: TestClient, keeper: str, agent: str) -> str:
    """The public handle of the session with user agent ``agent``, as ``keeper`` lists it."""
    listed = client.get("/api/me/sessions", headers=as_session(keeper)).json()["data"]
    return next(s["id"] for s in listed["sessions"] if s["user_agent"] == agent)


@dataclass(frozen=True)
class Destroy:
    """One way instance A destroys the ``doomed`` session while Redis is up."""

    run: Callable[[TestClient, str, str], object]
    keeper_survives: bool = True
    session: dict[str, object] = field(default_factory=dict)


def logout(a: TestClient, doomed: str, keeper: str) -> object:
    return a.post("/api/auth/logout", headers=as_session(doomed))


def revoke_device(a: TestClient, doomed: str, keeper: str) -> object:
    handle = handle_of(a, keeper, "doomed")
    return a.delete(f"/api/me/sessions/{handle}", headers=as_session(keeper))


def revoke_others(a: TestClient, doomed: str, keeper: str) -> object:
    return a.post("/api/me/sessions/revoke-others", headers=as_session(keeper))


def admin_revoke_all(a: TestClient, doomed: str, keeper: str) -> object:
    return a.delete("/api/users/alice/sessions", headers={"authorization": f"Bearer {ADMIN_KEY}"})


def over_the_limit(a: TestClient, doomed: str, keeper: str) -> object:
    return device(a, "alice", "third")  # MAX_PER_USER = 2: the oldest, doomed, goes


DESTROYS = {
    "logout": Destroy(logout),
    "revoke-device": Destroy(revoke_device),
    "revoke-others": Destroy(revoke_others),
    "admin-revoke-all": Destroy(admin_revoke_all, keeper_survives=False),
    "max-sessions": Destroy(over_the_limit, session={"MAX_PER_USER": 2}),
}


@pytest.mark.parametrize("kind", list(DESTROYS))
def test_a_session_destroyed_on_one_instance_is_not_served_by_another_in_an_outage(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer, kind: str
) -> None:
    """A session both instances served and A destroyed while Redis was up is refused by B once
    Redis is down, while B keeps serving the sessions nobody destroyed."""
    destroy = DESTROYS[kind]
    a, b = (
        make_client(
            fresh_redis_server.url, redis={"PROBE_INTERVAL": PROBE}, session=destroy.session
        )
        for _ in range(2)
    )
    doomed = device(a, "alice", "doomed")
    keeper = device(a, "alice", "keeper")
    assert status(b, doomed) == status(b, keeper) == 200  # both mirrored on B too

    destroy.run(a, doomed, keeper)
    wait_for(lambda: not mirrored(b, doomed))
    fresh_redis_server.kill()

    assert status(b, doomed) == 401
    assert status(a, doomed) == 401
    assert status(b, keeper) == (200 if destroy.keeper_survives else 401)
    assert core_of(b).mode == "degraded"


def test_copies_the_revocation_link_did_not_cover_are_not_served(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """After the revocation link drops while Redis answers, B serves in an outage only what
    Redis confirmed since the link came back, so a destroy it may have missed never shows."""
    server = fresh_redis_server
    a, b = (make_client(server.url, redis={"PROBE_INTERVAL": PROBE}) for _ in range(2))
    old = device(a, "alice", "old")
    missed = device(a, "alice", "missed")
    assert status(b, old) == status(b, missed) == 200
    links = core_of(b).coherence.links

    raw = server.client()
    raw.client_kill_filter(_type="pubsub")
    wait_for(lambda: core_of(b).coherence.links > links)
    fresh = device(a, "alice", "fresh")
    assert status(b, fresh) == 200  # read from Redis on the new link
    # A destroy made while B's link was down reaches B through no channel; a bare DEL, which
    # publishes nothing, is such a destroy.
    keys = core_of(b).redis_ops.keys
    raw.delete(keys.session(b.app.state.hub.manager.storage_id_for_cookie(missed)))  # type: ignore[attr-defined]
    server.kill()

    assert status(b, missed) == 401
    assert status(b, old) == 401  # not destroyed, but no longer vouched for either
    assert status(b, fresh) == 200
    assert core_of(b).mode == "degraded"


def test_sessions_served_through_an_empty_restart_are_listed_counted_and_revocable(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """Sessions both instances served from memory while Redis restarted empty are back in the
    user's list on both, in the counts and in presence, and revoking one reaches both."""
    server = fresh_redis_server
    a, b = (make_client(server.url, redis={"PROBE_INTERVAL": PROBE}) for _ in range(2))
    one = device(a, "alice", "one")
    two = device(b, "alice", "two")
    for client in (a, b):
        assert status(client, one) == status(client, two) == 200

    server.kill()
    for client in (a, b):
        assert status(client, one) == status(client, two) == 200
    server.restart()  # nothing persisted: Redis comes back empty
    wait_for(lambda: healthy_and_linked(a) and healthy_and_linked(b))

    for client, cookie in ((a, one), (b, two)):
        listed = client.get("/api/me/sessions", headers=as_session(cookie)).json()["data"]
        assert sorted(s["user_agent"] for s in listed["sessions"]) == ["one", "two"]
        assert client.get("/api/session/stats").json()["data"]["redis_sessions"] == 2
    online = a.app.state.hub.manager.user_keys.online_of("alice")  # type: ignore[attr-defined]
    assert server.client().zscore(online, "alice") is not None

    handle = handle_of(a, one, "two")
    assert a.delete(f"/api/me/sessions/{handle}", headers=as_session(one)).status_code == 200
    wait_for(lambda: not mirrored(b, two))
    assert status(b, two) == 401
    assert status(b, one) == 200  # read again from Redis, so vouched for in the next outage
    server.kill()
    assert status(b, two) == 401
    assert status(b, one) == 200


def test_a_session_destroyed_while_an_instance_was_cut_off_does_not_come_back(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """Instance B, cut off from Redis, serves a session from memory while A logs it out; when B's
    network heals, its recovery does not copy the session back, and B refuses it from then on."""
    server = fresh_redis_server
    proxy = TcpProxy(server.port)
    try:
        quick = {"PROBE_INTERVAL": PROBE, "SOCKET_TIMEOUT": 0.3, "CONNECT_TIMEOUT": 0.3}
        a = make_client(server.url, redis={"PROBE_INTERVAL": PROBE}, session=SLIDES)
        b = make_client(proxy.url, redis=quick, session=SLIDES)
        doomed = device(a, "alice", "doomed")
        assert status(b, doomed) == 200
        assert mirrored(b, doomed)
        proxy.cut()
        assert status(b, doomed) == 200  # from memory: the per-instance limit during an outage
        assert core_of(b).degraded
        assert a.post("/api/auth/logout", headers=as_session(doomed)).status_code == 200
        assert status(a, doomed) == 401
        proxy.resume()
        wait_for(lambda: healthy_and_linked(b))
        assert status(b, doomed) == 401
        assert status(a, doomed) == 401
        storage_id = a.app.state.hub.manager.storage_id_for_cookie(doomed)  # type: ignore[attr-defined]
        assert not server.client().exists(core_of(a).redis_ops.keys.session(storage_id))
    finally:
        proxy.close()
