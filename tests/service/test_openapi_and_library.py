"""The OpenAPI document lists every route; the library's user-session API, sync and asyncio."""

from __future__ import annotations

import asyncio
from typing import Any

import redis
from sessioncookie import as_session
from starlette.routing import Route
from starlette.testclient import TestClient

from helpers import ADMIN_KEY, Clock, build_settings, service_settings, wait_for
from sessionhub.hub import AsyncSessionHub, SessionHub
from sessionhub.service import models
from sessionhub.service.openapi import SUMMARIES


def test_openapi_lists_every_route(client: TestClient) -> None:
    """/openapi.json lists exactly the routes the service serves, each with a summary."""
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    listed = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = {
        (m, r.path)
        for r in client.app.routes  # type: ignore[attr-defined]
        if isinstance(r, Route)
        for m in (r.methods or set()) - {"HEAD"}
    }
    assert listed == served
    assert served <= set(SUMMARIES)  # every route has a written summary and security


def _query_names() -> set[str]:
    """Every query parameter any route of the service reads."""
    return {name for model in models.Query.__subclasses__() for name in model.model_fields}


def test_openapi_documents_every_body_parameter_and_error(
    client: TestClient, redis_url: str
) -> None:
    """Asked with a session and the admin key, each operation refuses a text body (415) exactly
    where the document gives a JSON request-body schema, names in its 4xx exactly the query
    parameters it lists, and every status it answered is among its documented responses."""
    doc = client.get("/openapi.json").json()
    hub = SessionHub(service_settings(redis_url))
    names = _query_names()
    try:

        def ask(method: str, url: str, **kwargs: Any) -> Any:
            # A fresh session each time: an operation before may have ended the last one.
            headers = {"Authorization": f"Bearer {ADMIN_KEY}", **kwargs.pop("headers", {})}
            return client.request(
                method, url, headers={**headers, **as_session(hub.login("alice")[1])}, **kwargs
            )

        for path, operations in doc["paths"].items():
            url = path.replace("{user_id}", "alice").replace("{handle}", "0" * 20)
            for method, op in operations.items():
                where = f"{method.upper()} {path}"
                documented = {p["name"] for p in op.get("parameters", ()) if p["in"] == "query"}
                answers = op["responses"].values()
                stream = any("text/event-stream" in r.get("content", {}) for r in answers)
                assert any(code.startswith("4") for code in op["responses"]) or (
                    op["security"] == [] and not documented and "requestBody" not in op
                ), where
                for name in documented:  # each listed parameter is read: a bad value is named
                    answer = ask(method, url, params={name: "\u00b2"})
                    assert 400 <= answer.status_code < 500, (where, name)
                    assert f"'{name}'" in answer.json()["error"]["message"], (where, name)
                if stream:
                    continue  # anything not refused starts a stream that never ends
                plain = {"content-type": "text/plain"}
                answer = ask(method, url, content=b"x", headers=plain)
                assert str(answer.status_code) in op["responses"], (where, answer.text)
                assert (answer.status_code == 415) == ("requestBody" in op), (where, answer.text)
                if "requestBody" in op:
                    schema = op["requestBody"]["content"]["application/json"]["schema"]
                    assert schema["$ref"].split("/")[-1] in doc["components"]["schemas"], where
                for name in names - documented:  # and none it reads is left out
                    answer = ask(method, url, params={name: "\u00b2"})
                    assert str(answer.status_code) in op["responses"], (where, name)
                    if answer.status_code in (400, 422):
                        assert f"'{name}'" not in answer.json()["error"]["message"], (where, name)
    finally:
        hub.close()


def test_library_user_sessions_sync_and_async(redis_url: str) -> None:
    """The library lists a user's sessions oldest first and revokes one or all, sync and async."""
    settings = build_settings(redis_url)
    hub = SessionHub(settings)
    hub.manager.core.clock = clock = Clock()
    try:
        first, _ = hub.login("erin", user_agent="one")
        clock.ms += 1  # created in another millisecond, so "oldest first" has one answer
        second, _ = hub.login("erin", user_agent="two")
        listed = hub.user_sessions.list("erin")
        assert [i.record.user_agent for i in listed] == ["one", "two"]
        assert all(i.handle != i.storage_id for i in listed)
        assert hub.user_sessions.revoke("erin", listed[0].handle) is True
        assert first.storage_id not in [i.storage_id for i in hub.user_sessions.list("erin")]
        assert hub.user_sessions.revoke_all("erin", keep_storage_id=second.storage_id) == 0
        assert [i.storage_id for i in hub.user_sessions.list("erin")] == [second.storage_id]
    finally:
        hub.close()

    async def main() -> int:
        ahub = AsyncSessionHub(settings)
        try:
            await ahub.login("erin", user_agent="three")
            revoked: int = await ahub.user_sessions.revoke_all("erin")
            return revoked
        finally:
            await ahub.aclose()

    assert asyncio.run(main()) == 2


def test_index_never_leaks_past_absolute_lifetime(redis_url: str) -> None:
    """Sessions that reach their absolute lifetime leave the index, and so does the key."""
    settings = build_settings(redis_url, session={"EXPIRES": 1, "ABSOLUTE_LIFETIME": 1})
    hub = SessionHub(settings)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        made = [hub.login("frank", user_agent=str(i))[0] for i in range(5)]
        key = hub.manager.user_keys.sessions("frank")
        assert r.zcard(key) == 5
        # Redis's own clock ends them (no test clock reaches it): wait until it has.
        hashes = [hub.manager.core.redis_ops.keys.session(s.storage_id) for s in made]
        wait_for(lambda: r.exists(*hashes) == 0)
        assert hub.user_sessions.list("frank") == []
        assert r.exists(key) == 0
    finally:
        hub.close()


def test_memory_only_mode_works() -> None:
    """SESSION.TYPE = memory: every feature runs on this process alone."""
    hub = SessionHub(build_settings(None))
    try:
        session, _ = hub.login("gina")
        assert [i.storage_id for i in hub.user_sessions.list("gina")] == [session.storage_id]
        assert hub.preferences.patch("gina", {"theme": "dark"})["theme"] == "dark"
        hub.presence.touch("gina", session.storage_id)
        assert hub.presence.online_count()["online_users"] == 1
        hub.inbox.send("gina", "hello")
        assert [m["body"] for m in hub.inbox.page("gina")["messages"]] == ["hello"]
        assert hub.inbox.broadcast("to all") == {"recipients": 1}  # gina is online here
        assert len(hub.inbox.page("gina")["messages"]) == 2
    finally:
        hub.close()


def test_user_keys_share_one_hash_tag_even_with_braces(redis_url: str) -> None:
    """Every per-user key of a user id with braces names one cluster slot, and works."""
    from redis.crc import key_slot

    hub = SessionHub(build_settings(redis_url))
    try:
        keys = hub.manager.user_keys
        user = "we{ird}%user"
        names = [
            keys.sessions(user),
            keys.settings(user),
            keys.inbox(user),
            keys.inbox_read(user),
            keys.inbox_read_ids(user),
            keys.send_rate(user),
        ]
        assert len({key_slot(n.encode()) for n in names}) == 1
        assert keys.sessions(user) != keys.sessions("we{ird}")
        session, _ = hub.login(user)
        assert [i.storage_id for i in hub.user_sessions.list(user)] == [session.storage_id]
        hub.inbox.send(user, "x")
        assert len(hub.inbox.page(user)["messages"]) == 1
    finally:
        hub.close()


def test_concurrent_setting_patches_lose_nothing(redis_url: str) -> None:
    """Compare-and-set: many writers patching different custom keys all persist."""
    import threading

    hubs = [SessionHub(build_settings(redis_url)) for _ in range(4)]
    try:

        def writer(n: int) -> None:
            for i in range(10):
                hubs[n].preferences.patch("hank", {"custom": {f"k{n}-{i}": i}})

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(hubs[0].preferences.get("hank")["custom"]) == 40
    finally:
        for hub in hubs:
            hub.close()
