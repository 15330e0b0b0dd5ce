"""One small app per adapter, and a client per app that speaks plain HTTP cookies.

Every app has the same routes; each client keeps the session cookie itself (no framework cookie
jar), so the contract tests can copy, tamper with and replay it the same way everywhere.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

from helpers import await_for, wait_for
from sessionhub.config import Settings
from sessionhub.hub import SessionHub
from sessionhub.integrations.base import RequestSession, commit

COOKIE = "session"


@dataclass
class Reply:
    """A response reduced to what the contract looks at."""

    status: int
    body: Any
    set_cookies: list[str] = field(default_factory=list)


_arrived: Counter[str] = Counter()
_arrived_lock = threading.Lock()


def _arrive(payload: dict[str, Any]) -> Callable[[], bool] | None:
    """Count this request at its meeting point (``"meet": name``); returns whether every party
    has arrived there, or ``None`` when the request asked for none."""
    name = payload.get("meet")
    if not name:
        return None
    with _arrived_lock:
        _arrived[name] += 1
    return lambda: _arrived[name] >= payload["parties"]


def meet(payload: dict[str, Any]) -> None:
    """Hold a request of a blocking app (one thread each) until the others meeting it arrive:
    requests that hold their loaded session here overlap for certain."""
    everyone = _arrive(payload)
    if everyone is not None:
        wait_for(everyone)


async def ameet(payload: dict[str, Any]) -> None:
    """:func:`meet` for the asyncio apps, whose requests share one event loop."""
    everyone = _arrive(payload)
    if everyone is not None:
        await await_for(everyone)


def apply_route(route: str, session: RequestSession, body: dict[str, Any]) -> dict[str, Any]:
    """The routes every app serves, on a RequestSession (Flask, ASGI, library)."""
    if route == "visits":
        session["visits"] = session.get("visits", 0) + 1
        return {"visits": session["visits"]}
    if route == "set":
        session[body["key"]] = body["value"]
        return {"ok": True}
    if route == "read":
        return {"data": dict(session), "user": session.user_id}
    if route == "login":
        session.login(body["username"])
        return {"user": session.user_id}
    if route == "logout":
        session.logout()
        return {"ok": True}
    if route == "regenerate":
        session.regenerate()
        return {"ok": True}
    if route == "ping":
        return {"ok": True}
    raise KeyError(route)


class Client:
    """Base client: ``call(method, route, json)`` with the cookie kept in ``self.cookie``."""

    name = "?"

    def __init__(self) -> None:
        self.cookie: str | None = None

    def call(
        self, route: str, body: dict[str, Any] | None = None, *, meet: str = "", parties: int = 2
    ) -> Reply:
        """Send one request (POST when there is a body) and update the kept cookie. With
        ``meet``, the app holds the request, session loaded, until ``parties`` requests have
        come to that meeting point."""
        payload = dict(body or {})
        if meet:
            payload.update(meet=meet, parties=parties)
        reply = self._send(route, payload)
        for header in reply.set_cookies:
            jar: SimpleCookie = SimpleCookie()
            jar.load(header)
            if COOKIE in jar:
                morsel = jar[COOKIE]
                cleared = morsel["max-age"] == "0" or morsel.value in ("", '""')
                self.cookie = None if cleared else morsel.value
        return reply

    def _send(self, route: str, payload: dict[str, Any]) -> Reply:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        """The request headers carrying the kept cookie."""
        return {"Cookie": f"{COOKIE}={self.cookie}"} if self.cookie else {}

    def clone(self) -> Client:
        """A second client of the same app holding the same cookie (for concurrent requests)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the client holds (hubs, loops)."""


# -- library ---------------------------------------------------------------------------------


class LibraryClient(Client):
    """No framework: the blocking hub, RequestSession and commit, as an adapter uses them."""

    name = "library"

    def __init__(self, settings: Settings, hub: SessionHub | None = None) -> None:
        super().__init__()
        self.hub = hub or SessionHub(settings)
        self._owner = hub is None

    def _send(self, route: str, payload: dict[str, Any]) -> Reply:
        from sessionhub.exceptions import InvalidTokenError

        session = None
        if self.cookie:
            try:
                session = self.hub.open(self.cookie)
            except InvalidTokenError:
                session = None
        rs = RequestSession(session, had_cookie=bool(self.cookie))
        meet(payload)
        body = apply_route(route, rs, payload)
        action = self.hub.run(commit(self.hub.manager, rs))
        cookies = []
        if action.clear:
            cookies.append(f"{COOKIE}=; Max-Age=0")
        elif action.set_value:
            cookies.append(f"{COOKIE}={action.set_value}")
        return Reply(200, body, cookies)

    def clone(self) -> Client:
        other = LibraryClient(self.hub.settings, self.hub)
        other.cookie = self.cookie
        return other

    def close(self) -> None:
        if self._owner:
            self.hub.close()


# -- Flask -----------------------------------------------------------------------------------


def make_flask_app(settings: Settings) -> Any:
    """The contract app on Flask with the SessionHub extension."""
    import flask

    from sessionhub.integrations.flask import FlaskSessionHub

    app = flask.Flask("contract")
    app.config["SESSIONHUB"] = settings
    FlaskSessionHub(app)

    @app.route("/<route>", methods=["GET", "POST"])
    def view(route: str) -> Any:
        payload = flask.request.get_json(silent=True) or {}
        meet(payload)
        return flask.jsonify(apply_route(route, flask.session, payload))  # type: ignore[arg-type]

    return app


class FlaskClient(Client):
    """Flask's own test client (without its cookie jar)."""

    name = "flask"

    def __init__(self, settings: Settings, app: Any = None) -> None:
        super().__init__()
        self.app = app or make_flask_app(settings)
        self._owner = app is None
        self.client = self.app.test_client(use_cookies=False)

    def _send(self, route: str, payload: dict[str, Any]) -> Reply:
        if payload:
            r = self.client.post(f"/{route}", json=payload, headers=self.headers())
        else:
            r = self.client.get(f"/{route}", headers=self.headers())
        return Reply(r.status_code, r.get_json(), r.headers.getlist("Set-Cookie"))

    def clone(self) -> Client:
        other = FlaskClient(Settings(), self.app)
        other.cookie = self.cookie
        return other

    def close(self) -> None:
        if self._owner:
            self.app.session_interface.hub.close()


# -- ASGI: Starlette and FastAPI -------------------------------------------------------------


def make_starlette_app(settings: Settings) -> Any:
    """The contract app on bare Starlette with the SessionHub middleware."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from sessionhub.integrations.asgi import SessionMiddleware

    async def view(request: Request) -> JSONResponse:
        payload = json.loads(await request.body() or b"{}")
        await ameet(payload)
        route = request.path_params["route"]
        return JSONResponse(apply_route(route, request.session, payload))  # type: ignore[arg-type]

    return Starlette(
        routes=[Route("/{route}", view, methods=["GET", "POST"])],
        middleware=[Middleware(SessionMiddleware, settings=settings)],
    )


def make_quart_app(settings: Settings) -> Any:
    """The contract app on Quart with SessionHub's Quart extension."""
    import quart

    from sessionhub.integrations.quart import QuartSessionHub

    app = quart.Quart("contract")
    app.config["SESSIONHUB"] = settings
    QuartSessionHub(app)

    @app.route("/<route>", methods=["GET", "POST"])
    async def view(route: str) -> Any:
        payload = await quart.request.get_json(silent=True) or {}
        await ameet(payload)
        return apply_route(route, quart.session, payload)  # type: ignore[arg-type]

    return app


def make_litestar_app(settings: Settings) -> Any:
    """The contract app on Litestar (its own module: Litestar needs evaluable annotations)."""
    from litestar_contract_app import make_app

    return make_app(settings)


def make_fastapi_app(settings: Settings) -> Any:
    """The contract app on FastAPI (its own module: FastAPI needs evaluable annotations)."""
    from fastapi_contract_app import make_app

    return make_app(settings)


class AsgiClient(Client):
    """Starlette's TestClient (httpx), one event loop for the whole test."""

    def __init__(self, name: str, app: Any, test_client: Any = None) -> None:
        super().__init__()
        from starlette.testclient import TestClient

        self.name = name
        self.app = app
        self._owner = test_client is None
        self.client = test_client or TestClient(app)
        if self._owner:
            self.client.__enter__()

    def _send(self, route: str, payload: dict[str, Any]) -> Reply:
        if payload:
            r = self.client.post(f"/{route}", json=payload, headers=self.headers())
        else:
            r = self.client.get(f"/{route}", headers=self.headers())
        self.client.cookies.clear()
        return Reply(r.status_code, r.json(), r.headers.get_list("set-cookie"))

    def clone(self) -> Client:
        other = AsgiClient(self.name, self.app, self.client)
        other.cookie = self.cookie
        return other

    def close(self) -> None:
        if self._owner:
            self.client.__exit__(None, None, None)


# -- Django ----------------------------------------------------------------------------------

DJANGO_LOCK = threading.Lock()


def django_view(request: Any, route: str) -> Any:
    """The contract routes with Django's session API (``cycle_key``, ``flush``)."""
    from django.http import JsonResponse

    payload = json.loads(request.body or b"{}")
    session = request.session
    if payload.get("meet"):
        session.get("visits")  # load before meeting, like the other adapters do
        meet(payload)
    if route == "visits":
        session["visits"] = session.get("visits", 0) + 1
        return JsonResponse({"visits": session["visits"]})
    if route == "set":
        session[payload["key"]] = payload["value"]
        return JsonResponse({"ok": True})
    if route == "read":
        data = {k: v for k, v in session.items() if not k.startswith("_auth")}
        return JsonResponse({"data": data, "user": session.get("_auth_user_id")})
    if route == "login":
        session.cycle_key()
        session["_auth_user_id"] = payload["username"]
        return JsonResponse({"user": payload["username"]})
    if route == "logout":
        session.flush()
        return JsonResponse({"ok": True})
    if route == "regenerate":
        session.cycle_key()
        return JsonResponse({"ok": True})
    return JsonResponse({"ok": True})


urlpatterns: list[Any] = []


def configure_django() -> None:
    """Configure Django once per process for the contract app (this module is the URLconf)."""
    import django
    from django.conf import settings as dj

    with DJANGO_LOCK:
        if dj.configured:
            return
        dj.configure(
            SECRET_KEY="django-test-secret-key-0123456789",
            ALLOWED_HOSTS=["testserver", "127.0.0.1", "localhost"],
            ROOT_URLCONF=__name__,
            MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
            INSTALLED_APPS=["django.contrib.sessions"],
            SESSION_ENGINE="sessionhub.integrations.django",
            SESSION_COOKIE_NAME=COOKIE,
            DATABASES={},
            USE_TZ=True,
        )
        django.setup()
        from django.urls import path

        urlpatterns.append(path("<str:route>", django_view))


class DjangoClient(Client):
    """Django's test Client, with SESSIONHUB overridden for this test."""

    name = "django"

    def __init__(self, settings: Settings, override: Any = None) -> None:
        super().__init__()
        configure_django()
        from django.test import Client as DjClient
        from django.test import override_settings

        self._override = override
        if override is None:
            hub_settings = settings.model_dump(by_alias=True, exclude={"secret_key"})
            self._override = override_settings(SESSIONHUB=hub_settings)
            self._override.enable()
        self._owner = override is None
        self.client = DjClient()

    def _send(self, route: str, payload: dict[str, Any]) -> Reply:
        self.client.cookies.clear()
        if payload:
            r = self.client.post(
                f"/{route}", payload, content_type="application/json", headers=self.headers()
            )
        else:
            r = self.client.get(f"/{route}", headers=self.headers())
        cookies = [m.OutputString() for m in r.cookies.values()]
        return Reply(r.status_code, json.loads(r.content), cookies)

    def clone(self) -> Client:
        other = DjangoClient(Settings(), self._override)
        other.cookie = self.cookie
        return other

    def close(self) -> None:
        if self._owner:
            from sessionhub.integrations.django import close_hub

            self._override.disable()
            close_hub()


ADAPTERS: dict[str, Callable[[Settings], Client]] = {
    "library": LibraryClient,
    "flask": FlaskClient,
    "starlette": lambda s: AsgiClient("starlette", make_starlette_app(s)),
    "fastapi": lambda s: AsgiClient("fastapi", make_fastapi_app(s)),
    "django": DjangoClient,
    "quart": lambda s: AsgiClient("quart", make_quart_app(s)),
    "litestar": lambda s: AsgiClient("litestar", make_litestar_app(s)),
}


@contextlib.contextmanager
def open_client(adapter: str, settings: Settings) -> Iterator[Client]:
    """A client of ``adapter`` on ``settings``, closed afterwards."""
    client = ADAPTERS[adapter](settings)
    try:
        yield client
    finally:
        client.close()
