"""One app per adapter with the same four routes, each using the request session's helpers for
concurrent requests in its framework's idiom:

* ``POST /start``: stores ``n = 0`` and ``items = []`` (creates the session).
* ``POST /bump``: reads ``n``, increments it atomically, then sets ``last`` (so the
  end-of-request save has something to write besides the counter); answers ``{"n": new}``.
* ``POST /add`` ``{"item": x}``: appends ``x`` to ``log`` atomically.
* ``POST /locked`` ``{"item": x}``: under the session's lock, ``items = items + [x]``.
* ``GET /read``: the session's data.

No ``from __future__ import annotations`` here: FastAPI and Litestar read the handlers'
annotations.
"""

import json
from typing import Annotated, Any

from sessionhub.config import Settings

LOCK_WAIT = 30


def make_flask_app(settings: Settings) -> Any:
    """Flask: ``flask.session.increment("n")`` and ``with flask.session.lock():``."""
    import flask

    from sessionhub.integrations.flask import FlaskSession, FlaskSessionHub

    app = flask.Flask("atomic")
    app.config["SESSIONHUB"] = settings
    FlaskSessionHub(app)

    @app.post("/<route>")
    @app.get("/<route>")
    def view(route: str) -> Any:
        session = flask.session
        assert isinstance(session, FlaskSession)
        return sync_route(session, route, flask.request.get_json(silent=True) or {})

    return app


def sync_route(session: Any, route: str, body: dict[str, Any]) -> dict[str, Any]:
    """The routes on a blocking adapter's request session (Flask, Django's sync views)."""
    if route == "start":
        session.update({"n": 0, "items": []})
    elif route == "bump":
        session.get("n")
        new = session.increment("n")
        session["last"] = new
        return {"n": new}
    elif route == "add":
        session.append("log", body["item"])
    elif route == "locked":
        with session.lock(block=LOCK_WAIT):
            session["items"] = [*session["items"], body["item"]]
    elif route == "read":
        return dict(session)
    return {"ok": True}


async def async_route(session: Any, route: str, body: dict[str, Any]) -> dict[str, Any]:
    """The routes on an asyncio adapter's request session (ASGI, Quart, Litestar)."""
    if route == "start":
        session.update(n=0, items=[])
    elif route == "bump":
        session.get("n")
        new = await session.increment("n")
        session["last"] = new
        return {"n": new}
    elif route == "add":
        await session.append("log", body["item"])
    elif route == "locked":
        async with session.lock(block=LOCK_WAIT):
            session["items"] = [*session["items"], body["item"]]
    elif route == "read":
        return dict(session)
    return {"ok": True}


def make_quart_app(settings: Settings) -> Any:
    """Quart: ``await quart.session.increment("n")`` and ``async with quart.session.lock():``."""
    import quart

    from sessionhub.integrations.quart import QuartSession, QuartSessionHub

    app = quart.Quart("atomic")
    app.config["SESSIONHUB"] = settings
    QuartSessionHub(app)

    @app.route("/<route>", methods=["GET", "POST"])
    async def view(route: str) -> Any:
        assert isinstance(quart.session, QuartSession)
        body = await quart.request.get_json(silent=True) or {}
        return await async_route(quart.session, route, body)

    return app


def make_starlette_app(settings: Settings) -> Any:
    """Starlette: ``await request.session.increment("n")``."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from sessionhub.integrations.asgi import AsyncRequestSession, SessionMiddleware

    async def view(request: Request) -> JSONResponse:
        assert isinstance(request.session, AsyncRequestSession)
        body = json.loads(await request.body() or b"{}")
        route = request.path_params["route"]
        return JSONResponse(await async_route(request.session, route, body))

    return Starlette(
        routes=[Route("/{route}", view, methods=["GET", "POST"])],
        middleware=[Middleware(SessionMiddleware, settings=settings)],
    )


def make_fastapi_app(settings: Settings) -> Any:
    """FastAPI: the session from the ``current_session`` dependency."""
    from fastapi import Depends, FastAPI, Request

    from sessionhub.integrations.asgi import AsyncRequestSession, SessionMiddleware, current_session

    app = FastAPI()
    app.add_middleware(SessionMiddleware, settings=settings)
    Session = Annotated[AsyncRequestSession, Depends(current_session)]

    @app.api_route("/{route}", methods=["GET", "POST"])
    async def view(route: str, session: Session, request: Request) -> dict[str, Any]:
        body = json.loads(await request.body() or b"{}")
        return await async_route(session, route, body)

    return app


def make_litestar_app(settings: Settings) -> Any:
    """Litestar: ``await request.session.increment("n")``."""
    from litestar import Litestar, Request, route
    from litestar.params import FromPath

    from sessionhub.integrations.litestar import AsyncRequestSession, SessionHubPlugin

    @route("/{name:str}", http_method=["GET", "POST"], status_code=200)
    async def view(request: Request[Any, Any, Any], name: FromPath[str]) -> dict[str, Any]:
        body = json.loads(await request.body() or b"{}")
        assert isinstance(request.session, AsyncRequestSession)
        return await async_route(request.session, name, body)

    return Litestar(route_handlers=[view], plugins=[SessionHubPlugin(settings=settings)])


def django_view(request: Any, route: str) -> Any:
    """Django, sync: ``request.session.increment("n")`` and ``with request.session.lock():``."""
    from django.http import JsonResponse

    return JsonResponse(sync_route(request.session, route, json.loads(request.body or b"{}")))


async def django_async_view(request: Any, route: str) -> Any:
    """Django, async: ``await request.session.aincrement("n")`` and ``async with
    request.session.alock():``."""
    from django.http import JsonResponse

    session = request.session
    body = json.loads(request.body or b"{}")
    if route == "start":
        await session.aupdate({"n": 0, "items": []})
    elif route == "bump":
        await session.aget("n")
        new = await session.aincrement("n")
        await session.aset("last", new)
        return JsonResponse({"n": new})
    elif route == "add":
        await session.aappend("log", body["item"])
    elif route == "locked":
        async with session.alock(block=LOCK_WAIT):
            await session.aset("items", [*(await session.aget("items")), body["item"]])
    elif route == "read":
        return JsonResponse(dict(await session.aitems()))
    return JsonResponse({"ok": True})


def _django_urls() -> list[Any]:
    from django.urls import path

    return [path("async/<str:route>", django_async_view), path("<str:route>", django_view)]


def __getattr__(name: str) -> Any:
    # Django reads this module's urlpatterns (ROOT_URLCONF) only once it is configured.
    if name == "urlpatterns":
        return _django_urls()
    raise AttributeError(name)
