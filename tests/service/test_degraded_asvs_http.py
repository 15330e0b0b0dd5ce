"""The ASVS V7 controls through the HTTP service while redis-server is really down: encrypted
sessions, remember me, re-authentication before ending sessions, and the revoke it guards."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable

from sessioncookie import as_session
from starlette.testclient import TestClient
from test_asvs_http import REVOKE_OTHERS, reauthenticated, remembered_login, with_clock
from test_coherence_http import core_of, healthy_and_linked, status

from helpers import device, strings_held, wait_for
from redis_server import RedisServer

PROBE = 0.5
KEY = {"ID": "k1", "KEY": base64.b64encode(os.urandom(32)).decode()}
AGENT = "DegradedAgent-5e1b"


def test_session_controls_through_the_service_while_redis_is_down(
    make_client: Callable[..., TestClient], fresh_redis_server: RedisServer
) -> None:
    """With Redis killed: the instance's sessions keep their remember-me lifetime, a stale login
    must re-authenticate (new cookie, old one dead) before ending the other sessions, memory
    holds the user agent sealed, and after recovery Redis has the outcome: the kept sessions,
    not the ended ones."""
    client = make_client(
        fresh_redis_server.url,
        redis={"PROBE_INTERVAL": PROBE},
        session={"REFRESH_THRESHOLD": 0},
        encryption={"KEYS": [KEY]},
    )
    clock = with_clock(client)
    other = device(client, "alice", AGENT)
    here = device(client, "alice", AGENT)
    kept, _ = remembered_login(client, "alice")
    fresh_redis_server.kill()
    assert client.get("/api/health/redis").status_code == 503
    assert status(client, here) == 200
    clock.ms += 7201 * 1000  # past EXPIRES: only the remembered session is left
    assert status(client, other) == status(client, here) == 401
    assert status(client, kept) == 200
    refused = client.post(REVOKE_OTHERS, headers=as_session(kept))
    assert (refused.status_code, refused.json()["error"]["reason"]) == (401, "stale")
    fresh = reauthenticated(client, kept)
    listed = client.get("/api/me/sessions", headers=as_session(fresh)).json()["data"]
    assert [(s["remember"], s["current"]) for s in listed["sessions"]] == [(True, True)]
    later = device(client, "alice", AGENT)  # a new login during the outage
    done = client.post(REVOKE_OTHERS, headers=as_session(fresh))
    assert done.json()["data"] == {"revoked": 1}
    assert status(client, later) == 401
    hub = client.app.state.hub  # type: ignore[attr-defined]
    assert [s for s in strings_held(hub) if AGENT in s] == []
    assert core_of(client).degraded

    fresh_redis_server.restart()
    wait_for(lambda: healthy_and_linked(client), timeout=30)
    assert status(client, fresh) == 200
    assert status(client, kept) == status(client, later) == 401
    sessions = client.get("/api/me/sessions", headers=as_session(fresh)).json()["data"]
    assert [s["user_agent"] for s in sessions["sessions"]] == ["testclient"]
