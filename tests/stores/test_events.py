"""Session events over a real Redis, through both hubs: what is emitted, with which reason, and
where expiries come from (keyspace notifications, the user index, the memory sweep)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import redis

from helpers import MakeHub, build_settings, wait_for
from redis_server import RedisServer
from sessionhub.events import EventKind, SessionEvent
from sessionhub.expiries import claim_expiry
from sessionhub.hub import SessionHub

KEYSPACE = {"ENABLE_KEYSPACE_NOTIFICATIONS": True}


def collect(*hubs: Any) -> list[SessionEvent]:
    """Every event of ``hubs``, in one list, as their dispatchers deliver them."""
    got: list[SessionEvent] = []
    for hub in hubs:
        hub.events.subscribe(got.append)
    return got


def of(got: list[SessionEvent], kind: EventKind) -> list[SessionEvent]:
    return [e for e in list(got) if e.kind == kind]


def drained(hub: Any, got: list[SessionEvent]) -> None:
    """Wait until ``hub`` delivered everything emitted so far: its queue is first in, first out,
    so a session created now is delivered after all of it."""
    marker, _ = hub.create()
    wait_for(lambda: any(e.storage_id == marker.storage_id for e in of(got, "created")))


def listed(hub: Any, user_id: str) -> list[Any]:
    """The user's live sessions (the index's read, which prunes), on either kind of hub."""
    found: list[Any] = hub.run(hub.manager.user_sessions_list(user_id))
    return found


def session_gone(hub: Any, client: redis.Redis, storage_id: str) -> bool:
    # EXISTS expires a key past its time, as the index's own read would.
    return not client.exists(hub.manager.core.redis_ops.keys.session(storage_id))


def test_lifecycle_events_carry_the_user_and_why_a_session_went(make_hub: MakeHub) -> None:
    """Logins, a rotation, an extend, the per-user limit, a revoke and a logout each emit their
    event, and every destroy says why."""
    hub = make_hub(session={"MAX_PER_USER": 2})
    got = collect(hub)
    a, _ = hub.login("alice")
    b, _ = hub.login("alice", previous=a)
    c, _ = hub.regenerate(b)
    assert hub.extend(c) is not None
    # The limit drops the session created first; one made in the same millisecond would tie.
    then = time.time_ns() // 1_000_000
    wait_for(lambda: time.time_ns() // 1_000_000 > then, step=0.001)
    d, _ = hub.login("alice")
    e, _ = hub.login("alice")  # three sessions: the oldest (c) goes
    assert hub.run(hub.manager.revoke_user_sessions("alice", keep_storage_id=e.storage_id)) == 1
    assert hub.destroy(e.storage_id)
    wait_for(lambda: len(of(got, "destroyed")) == 5)
    reasons = {ev.storage_id: ev.reason for ev in of(got, "destroyed")}
    assert reasons == {
        a.storage_id: "login",
        b.storage_id: "regenerated",
        c.storage_id: "limit",
        d.storage_id: "revoked",
        e.storage_id: "logout",
    }
    assert [ev.storage_id for ev in of(got, "created")] == [
        a.storage_id,
        b.storage_id,
        c.storage_id,
        d.storage_id,
        e.storage_id,
    ]
    assert [ev.storage_id for ev in of(got, "refreshed")] == [c.storage_id]
    assert {ev.user_id for ev in got} == {"alice"}
    assert all(ev.short_storage_id == ev.storage_id[:8] and len(ev.storage_id) == 32 for ev in got)


def test_coroutine_subscribers_run_and_a_failing_one_breaks_nothing(make_hub: MakeHub) -> None:
    """A coroutine function is awaited, a subscriber that raises is only logged (the request
    and the other subscribers go on), and an unsubscribed one hears nothing more."""
    hub = make_hub()
    seen: list[SessionEvent] = []
    dropped_out: list[SessionEvent] = []

    def broken(event: SessionEvent) -> None:
        raise RuntimeError("subscriber bug")

    async def recorder(event: SessionEvent) -> None:
        await asyncio.sleep(0)
        seen.append(event)

    hub.events.subscribe(broken)
    hub.events.subscribe(recorder)
    unsubscribe = hub.events.subscribe(dropped_out.append)
    unsubscribe()
    session, cookie = hub.create("bob")
    assert hub.open(cookie) is not None
    assert hub.destroy(session.storage_id)
    wait_for(lambda: [e.kind for e in seen] == ["created", "destroyed"])
    assert dropped_out == []


def test_a_full_queue_drops_the_oldest_and_counts_them(redis_url: str) -> None:
    """While a subscriber is stuck, the bounded queue keeps the newest events and counts what
    it dropped; requests never wait for it."""
    hub = SessionHub(build_settings(redis_url, events={"QUEUE_SIZE": 2}))
    try:
        got: list[SessionEvent] = []
        entered, release = threading.Event(), threading.Event()

        def stuck(event: SessionEvent) -> None:
            got.append(event)
            entered.set()
            release.wait()

        hub.events.subscribe(stuck)
        first, _ = hub.create()
        wait_for(entered.is_set)
        later = [hub.create()[0] for _ in range(4)]
        assert hub.events.dropped == 2
        release.set()
        wait_for(lambda: len(got) == 3)
        assert [e.storage_id for e in got] == [
            first.storage_id,
            later[2].storage_id,
            later[3].storage_id,
        ]
    finally:
        hub.close()


def test_degraded_and_recovered_events(make_hub: MakeHub, fresh_redis_server: RedisServer) -> None:
    """Losing Redis emits ``degraded`` with the fault; the probe's recovery emits ``recovered``."""
    hub = make_hub(redis={"URL": fresh_redis_server.url})
    got = collect(hub)
    fresh_redis_server.stop()
    hub.create("carol")
    wait_for(lambda: len(of(got, "degraded")) == 1)
    assert of(got, "degraded")[0].reason == "unreachable"
    fresh_redis_server.start()
    wait_for(lambda: len(of(got, "recovered")) == 1)


def test_the_index_sweep_reports_an_expiry_once_and_a_destroy_not_at_all(
    make_hub: MakeHub, redis_server: RedisServer
) -> None:
    """Without keyspace notifications the user index's pruning reports an expired session, with
    its user, from the one process that removed it; a session destroyed by a process that did not
    know its user (its index entry stayed) is not reported as expired."""
    short = {"EXPIRES": 1, "ABSOLUTE_LIFETIME": 600}
    first, second = make_hub(session=short), make_hub(session=short)
    got = collect(first, second)
    expiring, _ = first.create("dave")
    destroyed, _ = first.create("dave")
    assert second.destroy(destroyed.storage_id)  # second never saw it: the index keeps its entry
    client = redis_server.client()
    wait_for(lambda: session_gone(first, client, expiring.storage_id))
    assert listed(first, "dave") == []
    assert listed(second, "dave") == []
    drained(first, got)
    drained(second, got)
    expired = of(got, "expired")
    assert [(e.storage_id, e.user_id) for e in expired] == [(expiring.storage_id, "dave")]


def test_keyspace_notifications_report_each_expiry_once(
    make_hub: MakeHub, redis_server: RedisServer
) -> None:
    """With keyspace notifications every process hears each expiry, and the one that claims it
    reports it, without a user id (the hash is gone); the index sweep then reports nothing."""
    client = redis_server.client(decode_responses=True)
    try:
        first = make_hub(session={"EXPIRES": 1}, events=KEYSPACE)
        second = make_hub(session={"EXPIRES": 1}, events=KEYSPACE)
        first.stats(), second.stats()  # an asyncio hub starts on its first call
        assert first.events.keyspace
        assert second.events.keyspace
        assert "x" in client.config_get("notify-keyspace-events")["notify-keyspace-events"]
        got = collect(first, second)
        anonymous, _ = first.create()
        known, _ = second.create("erin")
        wait_for(lambda: len(of(got, "expired")) >= 2)
        assert listed(first, "erin") == []  # prunes, reports nothing more
        drained(first, got)
        drained(second, got)
        # The markers expire too, later: only these two sessions are looked at.
        expired = [
            e
            for e in of(got, "expired")
            if e.storage_id in (anonymous.storage_id, known.storage_id)
        ]
        assert sorted(e.storage_id for e in expired) == sorted(
            [anonymous.storage_id, known.storage_id]
        )
        assert {e.user_id for e in expired} == {None}
        assert not first.run(claim_expiry(first.manager.core, known.storage_id))  # claimed already
    finally:
        client.config_set("notify-keyspace-events", "")
        client.close()


def test_a_redis_refusing_config_still_reports_expiries(
    make_hub: MakeHub, make_redis_server: Any
) -> None:
    """Where ``CONFIG`` is disabled (managed Redis), enabling notifications fails with a warning
    and the user index's pruning reports expiries instead."""
    server = make_redis_server("--rename-command", "CONFIG", "")
    hub = make_hub(redis={"URL": server.url}, session={"EXPIRES": 1}, events=KEYSPACE)
    hub.stats()  # an asyncio hub starts on its first call
    assert not hub.events.keyspace
    got = collect(hub)
    session, _ = hub.create("frank")
    client = server.client()
    wait_for(lambda: session_gone(hub, client, session.storage_id))
    assert listed(hub, "frank") == []
    wait_for(
        lambda: (
            [(e.storage_id, e.user_id) for e in of(got, "expired")]
            == [(session.storage_id, "frank")]
        )
    )


def test_the_memory_sweep_reports_expiries(make_hub: MakeHub) -> None:
    """A memory-only store's sweep reports each session that expired, with its user."""
    hub = make_hub(session={"TYPE": "memory", "EXPIRES": 1, "MEMORY_CLEANUP_INTERVAL": 0.1})
    got = collect(hub)
    session, _ = hub.create("gina")
    wait_for(
        lambda: (
            [(e.storage_id, e.user_id) for e in of(got, "expired")]
            == [(session.storage_id, "gina")]
        )
    )
