"""The helpers for concurrent requests in every adapter, through each framework's test client on
the test Redis: 16 concurrent requests on one session lose no increment, no appended element
and no update made under the lock, and the end-of-request save never writes an old value back."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable, Coroutine, Iterator
from http.cookies import SimpleCookie
from typing import Any

import pytest

from helpers import LoopThread, build_settings, run_threads
from sessionhub.config import Settings

WORKERS = 16
ROUNDS = 2
KEY = {"ID": "k1", "KEY": base64.b64encode(os.urandom(32)).decode()}
CONFIGS: dict[str, dict[str, Any]] = {
    "plain": {},
    "encrypted": {"encryption": {"KEYS": [KEY]}},
}
Reply = tuple[dict[str, Any], str | None]
"""A response's JSON body and the session cookie it set, if any."""


def cookie_of(headers: list[str]) -> str | None:
    """The session cookie value a response's ``Set-Cookie`` headers carry."""
    for header in headers:
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        if "session" in jar:
            return jar["session"].value
    return None


def cookie_header(cookie: str | None) -> dict[str, str]:
    """The request header that sends ``cookie``."""
    return {"Cookie": f"session={cookie}"} if cookie else {}


class Caller:
    """Sends requests to one adapter's app; ``together`` sends them all at once."""

    def call(self, route: str, body: dict[str, Any], cookie: str | None) -> Reply:
        raise NotImplementedError

    def together(self, calls: list[tuple[str, dict[str, Any]]], cookie: str) -> list[Reply]:
        """Each call in a thread of its own, all at once."""
        return run_threads(lambda i: self.call(*calls[i], cookie), len(calls))

    def close(self) -> None:
        """Release the app's hub and the client."""


class FlaskCaller(Caller):
    """Flask's test client, one per thread (Flask serves each request in its caller's thread)."""

    def __init__(self, settings: Settings) -> None:
        from atomic_apps import make_flask_app

        self.app = make_flask_app(settings)

    def call(self, route: str, body: dict[str, Any], cookie: str | None) -> Reply:
        client = self.app.test_client(use_cookies=False)
        r = client.post(f"/{route}", json=body, headers=cookie_header(cookie))
        assert r.status_code == 200, r.get_data(as_text=True)
        return r.get_json(), cookie_of(r.headers.getlist("Set-Cookie"))

    def close(self) -> None:
        self.app.session_interface.hub.close()


class PortalCaller(Caller):
    """Starlette's or Litestar's TestClient: requests from several threads run at once on the
    client's event loop."""

    def __init__(self, client: Any) -> None:
        self.client = client
        client.__enter__()

    def call(self, route: str, body: dict[str, Any], cookie: str | None) -> Reply:
        r = self.client.post(f"/{route}", json=body, headers=cookie_header(cookie))
        assert r.status_code == 200, r.text
        return r.json(), cookie_of(r.headers.get_list("set-cookie"))

    def close(self) -> None:
        self.client.__exit__(None, None, None)


class LoopCaller(Caller):
    """An async test client (Quart's, Django's) on one event loop; ``together`` gathers."""

    def __init__(self) -> None:
        self.loop = LoopThread()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run(coro)

    async def acall(self, route: str, body: dict[str, Any], cookie: str | None) -> Reply:
        raise NotImplementedError

    def call(self, route: str, body: dict[str, Any], cookie: str | None) -> Reply:
        return self.run(self.acall(route, body, cookie))  # type: ignore[no-any-return]

    def together(self, calls: list[tuple[str, dict[str, Any]]], cookie: str) -> list[Reply]:
        async def gathered() -> list[Reply]:
            return list(await asyncio.gather(*(self.acall(r, b, cookie) for r, b in calls)))

        return self.run(gathered())  # type: ignore[no-any-return]

    def close(self) -> None:
        self.loop.close()


class QuartCaller(LoopCaller):
    """Quart's own test client, inside ``test_app`` (startup and after-serving run)."""

    def __init__(self, settings: Settings) -> None:
        from atomic_apps import make_quart_app

        super().__init__()
        self.test_app = make_quart_app(settings).test_app()
        self.run(self.test_app.__aenter__())

    async def acall(self, route: str, body: dict[str, Any], cookie: str | None) -> Reply:
        client = self.test_app.test_client()
        r = await client.post(f"/{route}", json=body, headers=cookie_header(cookie))
        assert r.status_code == 200, await r.get_data(as_text=True)
        return await r.get_json(), cookie_of(r.headers.getlist("Set-Cookie"))

    def close(self) -> None:
        self.run(self.test_app.__aexit__(None, None, None))
        super().close()


class DjangoCaller(Caller):
    """Django's test Client, one per thread, on the sync views."""

    prefix = ""

    def __init__(self, settings: Settings) -> None:
        from contract_apps import configure_django

        configure_django()
        from django.test import override_settings

        hub_settings = settings.model_dump(by_alias=True, exclude={"secret_key"})
        self.override = override_settings(SESSIONHUB=hub_settings, ROOT_URLCONF="atomic_apps")
        self.override.enable()

    def call(self, route: str, body: dict[str, Any], cookie: str | None) -> Reply:
        from django.test import Client

        client = Client()
        if cookie:
            client.cookies["session"] = cookie
        r = client.post(f"/{self.prefix}{route}", body, content_type="application/json")
        assert r.status_code == 200, r.content
        return r.json(), cookie_of([m.OutputString() for m in r.cookies.values()])

    def close(self) -> None:
        from sessionhub.integrations.django import close_hub

        self.override.disable()
        close_hub()


class DjangoAsyncCaller(LoopCaller, DjangoCaller):
    """Django's AsyncClient on the async views (``aincrement``, ``alock``), gathered."""

    prefix = "async/"

    def __init__(self, settings: Settings) -> None:
        LoopCaller.__init__(self)
        DjangoCaller.__init__(self, settings)

    async def acall(self, route: str, body: dict[str, Any], cookie: str | None) -> Reply:
        from django.test import AsyncClient

        client = AsyncClient()
        if cookie:
            client.cookies["session"] = cookie
        r = await client.post(f"/{self.prefix}{route}", body, content_type="application/json")
        assert r.status_code == 200, r.content
        return r.json(), cookie_of([m.OutputString() for m in r.cookies.values()])

    def close(self) -> None:
        DjangoCaller.close(self)
        LoopCaller.close(self)


def _portal(make: str, client: str) -> Callable[[Settings], Caller]:
    def build(settings: Settings) -> Caller:
        import importlib

        import atomic_apps

        module, name = client.rsplit(".", 1)
        test_client = getattr(importlib.import_module(module), name)
        return PortalCaller(test_client(getattr(atomic_apps, make)(settings)))

    return build


ADAPTERS: dict[str, Callable[[Settings], Caller]] = {
    "flask": FlaskCaller,
    "quart": QuartCaller,
    "starlette": _portal("make_starlette_app", "starlette.testclient.TestClient"),
    "fastapi": _portal("make_fastapi_app", "starlette.testclient.TestClient"),
    "litestar": _portal("make_litestar_app", "litestar.testing.TestClient"),
    "django": DjangoCaller,
    "django-async": DjangoAsyncCaller,
}


@pytest.fixture(params=sorted(ADAPTERS))
def adapter(request: pytest.FixtureRequest) -> str:
    """The name of the adapter under test."""
    return str(request.param)


@pytest.fixture(params=sorted(CONFIGS))
def caller(adapter: str, request: pytest.FixtureRequest, redis_url: str) -> Iterator[Caller]:
    """A caller of ``adapter``'s app on the test Redis, plain and with encryption."""
    made = ADAPTERS[adapter](build_settings(redis_url, **CONFIGS[request.param]))
    try:
        yield made
    finally:
        made.close()


def started(caller: Caller) -> str:
    """The cookie of a new session holding ``n = 0`` and ``items = []``."""
    _, cookie = caller.call("start", {}, None)
    assert cookie
    return cookie


def test_concurrent_requests_keep_every_increment_and_element(caller: Caller) -> None:
    """16 requests at a time increment one counter and append to one list: each increment
    answers a value no other got, the counter ends at the number of requests, every element is
    in the list once, and the end-of-request saves wrote no old counter back."""
    cookie = started(caller)
    bumps = [("bump", {})] * (WORKERS * ROUNDS)
    adds = [("add", {"item": i}) for i in range(WORKERS * ROUNDS)]
    replies = caller.together(bumps[:WORKERS] + adds[:WORKERS], cookie)
    replies += caller.together(bumps[WORKERS:] + adds[WORKERS:], cookie)
    counted = sorted(body["n"] for body, _ in replies if "n" in body)
    assert counted == list(range(1, WORKERS * ROUNDS + 1))
    data, _ = caller.call("read", {}, cookie)
    assert data["n"] == WORKERS * ROUNDS
    assert sorted(data["log"]) == list(range(WORKERS * ROUNDS))


def test_concurrent_read_modify_writes_under_the_lock_keep_every_update(caller: Caller) -> None:
    """16 requests at a time each add an item to a list by read, change and assign inside
    the session's lock: none is lost."""
    cookie = started(caller)
    for round_ in range(ROUNDS):
        calls = [("locked", {"item": f"{round_}.{i}"}) for i in range(WORKERS)]
        caller.together(calls, cookie)
    data, _ = caller.call("read", {}, cookie)
    assert sorted(data["items"]) == sorted(
        f"{r}.{i}" for r in range(ROUNDS) for i in range(WORKERS)
    )


def test_helpers_on_a_session_not_saved_yet_change_it_for_its_first_save(caller: Caller) -> None:
    """A request without a session cookie increments and appends to its new session: it is
    created with those values, and the next request continues from them."""
    body, cookie = caller.call("bump", {}, None)
    assert body == {"n": 1}
    assert cookie
    _, again = caller.call("add", {"item": "x"}, cookie)
    assert (again or cookie) == cookie
    assert caller.call("bump", {}, cookie)[0] == {"n": 2}
    data, _ = caller.call("read", {}, cookie)
    assert (data["n"], data["log"], data["last"]) == (2, ["x"], 2)
