"""Django specifics: the SessionStore API directly, sync and async, and cycle_key."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from contract_apps import configure_django

from helpers import build_settings
from sessionhub.config import Settings
from topology_fixtures import Topology


def _engine_on(settings: Settings) -> Iterator[type]:
    configure_django()
    from django.test import override_settings

    from sessionhub.integrations.django import SessionStore, close_hub

    hub_settings = settings.model_dump(by_alias=True, exclude={"secret_key"}, exclude_unset=True)
    with override_settings(SESSIONHUB=hub_settings):
        yield SessionStore
    close_hub()


@pytest.fixture
def store_class(redis_url: str) -> Iterator[type]:
    """Django's SessionStore of the engine, on the test Redis."""
    yield from _engine_on(build_settings(redis_url))


@pytest.fixture
def topology_store_class(topology: Topology) -> Iterator[type]:
    """Django's SessionStore of the engine, on each topology in turn."""
    yield from _engine_on(topology.settings())


def test_sync_store_api(store_class: type) -> None:
    """save, load, exists, cycle_key and delete behave as Django's own backends do."""
    store = store_class()
    store["a"] = 1
    store.save()
    key = store.session_key
    assert key
    assert store.exists(key)
    again = store_class(key)
    assert again["a"] == 1
    again.cycle_key()
    assert again.session_key != key
    assert not store_class().exists(key)
    assert store_class(again.session_key)["a"] == 1
    again.delete()
    assert not store_class().exists(again.session_key or "")
    assert store_class("forged-key-value").load() == {}


def _async_store_round(store_class: type) -> str:
    """Save, load, cycle and save again through the a* methods; the final key."""

    async def scenario() -> str:
        store = store_class()
        await store.aset("b", 2)
        await store.asave()
        key = store.session_key
        assert key
        assert await store_class().aexists(key)
        loaded = store_class(key)
        assert await loaded.aget("b") == 2
        await loaded.acycle_key()
        assert loaded.session_key != key
        assert not await store_class().aexists(key)
        await loaded.aset("c", 3)
        await loaded.asave()
        return str(loaded.session_key)

    return asyncio.run(scenario())


def test_async_store_api(store_class: type) -> None:
    """The a* methods run on redis.asyncio and see the same store as the sync ones."""
    key = _async_store_round(store_class)
    sync = store_class(key)
    assert sync["b"] == 2
    assert sync["c"] == 3

    async def remove() -> None:
        await store_class(key).adelete()

    asyncio.run(remove())
    assert not store_class().exists(key)


def test_login_binds_user_in_store(store_class: type) -> None:
    """A session holding contrib.auth's user id is bound to that user in SessionHub too."""
    from sessionhub.integrations.django import USER_KEY, get_hub

    store = store_class()
    store[USER_KEY] = "42"
    store.save()
    hub = get_hub()
    session = hub.open(store.session_key)
    assert session is not None
    assert session.user_id == "42"


def test_login_after_cycle_key_keeps_the_cycled_key(store_class: type) -> None:
    """contrib.auth's login (cycle_key, then the user id) costs one new key, not two: the save
    binds the cycled session to the user and keeps its key and data."""
    from sessionhub.integrations.django import USER_KEY, get_hub

    store = store_class()
    store["cart"] = [1]
    store.save()
    anonymous = store.session_key
    store.cycle_key()  # what django.contrib.auth.login does before it stores the user id
    cycled = store.session_key
    store[USER_KEY] = "42"
    store.save()
    assert store.session_key == cycled != anonymous
    assert not store_class().exists(anonymous)
    hub = get_hub()
    session = hub.open(cycled)
    assert session is not None
    assert session.user_id == "42"
    assert dict(session) == {"cart": [1], USER_KEY: "42"}
    assert [i.storage_id for i in hub.user_sessions.list("42")] == [session.storage_id]
    assert store_class(cycled)["cart"] == [1]


def test_user_set_on_an_older_session_still_gets_a_new_key(store_class: type) -> None:
    """A user id stored into a session from an earlier request, without cycle_key, rotates the
    key at save: that token has been sent and may have been fixed."""
    from sessionhub.integrations.django import USER_KEY, get_hub

    first = store_class()
    first["cart"] = [1]
    first.save()
    old = first.session_key
    later = store_class(old)  # the next request loads it
    later[USER_KEY] = "7"
    later.save()
    assert later.session_key not in (None, old)
    assert not store_class().exists(old)
    session = get_hub().open(later.session_key)
    assert session is not None
    assert session.user_id == "7"


def _ttl_ms(store: Any) -> int:
    """The Redis expiry (PTTL) of the session a store holds."""
    from sessionhub.integrations.django import get_hub

    hub = get_hub()
    storage_id = hub.manager.storage_id_for_cookie(store.session_key)
    assert hub.client is not None
    return int(hub.client.pttl(hub.manager.core.redis_ops.keys.session(storage_id)))


def test_set_expiry_governs_the_expiry_in_redis(store_class: type) -> None:
    """set_expiry() sets the server-side expiry as well as the cookie's: Redis holds what
    get_expiry_age() says, for seconds, for a date, and back to SESSION_COOKIE_AGE."""
    from django.conf import settings
    from django.utils import timezone

    store = store_class()
    store["a"] = 1
    store.set_expiry(60)
    store.save()
    assert 59_000 <= _ttl_ms(store) <= 60_000
    assert store.get_expiry_age() == 60
    store.set_expiry(timezone.now() + datetime.timedelta(seconds=600))
    store.save()
    assert 590_000 <= _ttl_ms(store) <= 600_000
    store.set_expiry(None)
    store.save()
    age = settings.SESSION_COOKIE_AGE * 1000
    assert age - 10_000 <= _ttl_ms(store) <= age
    # Loading does not slide it: as with Django's backends, a save sets it.
    store.set_expiry(60)
    store.save()
    assert store_class(store.session_key)["a"] == 1
    assert _ttl_ms(store) <= 60_000


def test_clearsessions_runs_on_the_engine(store_class: type) -> None:
    """Django's clearsessions command works with SessionHub's engine (Redis expires its own;
    the memory fallback is swept)."""
    from django.core.management import call_command

    store = store_class()
    store["a"] = 1
    store.save()
    call_command("clearsessions")
    assert store_class(store.session_key)["a"] == 1


def test_async_store_api_on_every_topology(topology_store_class: type, topology: Topology) -> None:
    """On Sentinel and Cluster too, the a* methods reach the topology's masters and see what the
    sync ones stored."""
    key = _async_store_round(topology_store_class)
    assert topology_store_class(key)["c"] == 3
    assert len(topology.keys("session:*:s:*")) == 1


def test_async_methods_use_redis_asyncio_on_the_running_loop(store_class: type) -> None:
    """The a* methods run the same operations on the running loop (no worker thread), through
    the auto-pipeline of a redis.asyncio client of that loop, closed when the loop shuts down."""
    from sessionhub.integrations import django as adapter
    from sessionhub.stores.autopipeline import AutoPipeline

    seen: list[Any] = []

    async def scenario() -> None:
        store = store_class()
        await store.aset("a", 1)
        await store.asave()
        loop = asyncio.get_running_loop()
        held = adapter._loop_clients._by_loop[loop]
        assert isinstance(held[1], AutoPipeline)
        seen.append(held[1])
        assert await store_class(store.session_key).aget("a") == 1

    asyncio.run(scenario())
    [calls] = seen
    assert calls._link is None


def test_a_session_from_a_former_secret_key_moves_to_the_new_key(redis_url: str) -> None:
    """With Django's SECRET_KEY rotated and the old key in SECRET_KEY_FALLBACKS, a session made
    under the old key still loads, is given a key signed with the new one, and saves under it."""
    configure_django()
    from django.test import override_settings

    from sessionhub.integrations.django import SessionStore, close_hub

    hub_settings = build_settings(redis_url).model_dump(
        by_alias=True, exclude={"secret_key"}, exclude_unset=True
    )
    old, new = "an-old-django-secret-key-0123456789", "a-new-django-secret-key-9876543210"
    with override_settings(SESSIONHUB=hub_settings, SECRET_KEY=old):
        store = SessionStore()
        store["cart"] = [1, 2]
        store.save()
        old_key = store.session_key
        close_hub()
    try:
        with override_settings(SESSIONHUB=hub_settings, SECRET_KEY=new, SECRET_KEY_FALLBACKS=[old]):
            moved = SessionStore(old_key)
            assert moved["cart"] == [1, 2]
            assert moved.session_key != old_key  # the middleware sends this key as the cookie
            assert moved.modified
            moved.save()
            new_key = moved.session_key
            close_hub()
        with override_settings(SESSIONHUB=hub_settings, SECRET_KEY=new):
            assert SessionStore(new_key)["cart"] == [1, 2]  # no fallback needed any more
    finally:
        close_hub()
