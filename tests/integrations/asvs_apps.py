"""One app per framework for the ASVS V7 tests: log in (remember me, a level), re-authenticate,
views guarded by ``require_fresh``, and a password change that ends the user's other sessions.

No ``from __future__ import annotations``: FastAPI reads the handlers' annotations.
"""

import json
from typing import Annotated, Any

from contract_apps import (
    AsgiClient,
    Client,
    DjangoClient,
    FlaskClient,
    configure_django,
    urlpatterns,
)

from sessionhub.config import Settings
from sessionhub.hub import AsyncSessionHub, SessionHub
from sessionhub.integrations.base import RequestSession

MAX_AGE = 60


def session_route(route: str, session: RequestSession, body: dict[str, Any]) -> dict[str, Any]:
    """The routes that only need the request's session (Flask and FastAPI)."""
    if route == "login":
        session.login(body["user"], remember=body.get("remember", False), level=body.get("level"))
    elif route == "reauth":
        session.reauthenticate(body.get("level"))
    elif route == "set":
        session[body["key"]] = body["value"]
    return {"data": dict(session), "user": session.user_id}


def make_flask(settings: Settings) -> tuple[Client, SessionHub]:
    """The app on Flask: the ``require_fresh`` decorator and ``reauthenticate``."""
    import flask

    from sessionhub.integrations.flask import FlaskSessionHub, current_user_id, require_fresh

    app = flask.Flask("asvs")
    app.config["SESSIONHUB"] = settings
    extension = FlaskSessionHub(app)

    @app.get("/fresh")
    @require_fresh(MAX_AGE, "password")
    def fresh() -> Any:
        return {"ok": True}

    @app.get("/fresh-mfa")
    @require_fresh(MAX_AGE, "mfa")
    def fresh_mfa() -> Any:
        return {"ok": True}

    @app.route("/<route>", methods=["GET", "POST"])
    def view(route: str) -> Any:
        body = flask.request.get_json(silent=True) or {}
        hub, user = extension.hub(), current_user_id()
        if route == "change-password" and user is not None:
            keep = flask.session.storage_id  # type: ignore[attr-defined]
            return {"revoked": hub.credentials_changed(user, keep=keep)}
        if route == "sessions" and user is not None:
            return {"remember": [i.record.remember for i in hub.user_sessions.list(user)]}
        return session_route(route, flask.session, body)  # type: ignore[arg-type]

    return FlaskClient(settings, app), extension.hub(app)


def make_fastapi(settings: Settings) -> tuple[Client, AsyncSessionHub]:
    """The app on FastAPI: the ``require_fresh`` dependency, answered by the middleware."""
    from fastapi import Body, Depends, FastAPI

    from sessionhub.integrations.asgi import SessionMiddleware, current_session, require_fresh

    hub = AsyncSessionHub(settings)
    app = FastAPI()
    app.add_middleware(SessionMiddleware, hub=hub)
    Session = Annotated[RequestSession, Depends(current_session)]

    @app.get("/fresh", dependencies=[Depends(require_fresh(MAX_AGE, "password"))])
    async def fresh() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/fresh-mfa")
    async def fresh_mfa(
        session: Annotated[RequestSession, Depends(require_fresh(MAX_AGE, "mfa"))],
    ) -> dict[str, bool]:
        return {"ok": session.user_id is not None}

    @app.api_route("/{route}", methods=["GET", "POST"])
    async def view(
        route: str, session: Session, body: Annotated[dict[str, Any] | None, Body()] = None
    ) -> dict[str, Any]:
        user = session.user_id
        if route == "change-password" and user is not None:
            return {"revoked": await hub.credentials_changed(user, keep=session.storage_id)}
        if route == "sessions" and user is not None:
            return {"remember": [i.record.remember for i in await hub.user_sessions.list(user)]}
        return session_route(route, session, body or {})

    return AsgiClient("fastapi", app), hub


def django_view(request: Any, route: str) -> Any:
    """The routes with SessionHub's Django helpers."""
    from django.http import JsonResponse

    from sessionhub.integrations.django import (
        current_user_id,
        get_hub,
        login_user,
        reauthenticate,
    )

    body = json.loads(request.body or b"{}")
    user = current_user_id(request)
    if route == "login":
        login_user(
            request, body["user"], remember=body.get("remember", False), level=body.get("level")
        )
    elif route == "reauth":
        reauthenticate(request, body.get("level"))
    elif route == "set":
        request.session[body["key"]] = body["value"]
    elif route == "change-password" and user is not None:
        keep = request.session.storage_id
        return JsonResponse({"revoked": get_hub().credentials_changed(user, keep=keep)})
    elif route == "sessions" and user is not None:
        listed = get_hub().user_sessions.list(user)
        return JsonResponse({"remember": [i.record.remember for i in listed]})
    data = {k: v for k, v in request.session.items() if not k.startswith("_")}
    return JsonResponse({"data": data, "user": current_user_id(request)})


def _install_django_routes() -> None:
    from django.http import JsonResponse
    from django.urls import path

    from sessionhub.integrations.django import require_fresh

    if any(getattr(p, "name", None) == "asvs" for p in urlpatterns):
        return

    @require_fresh(MAX_AGE, "password")
    def fresh(request: Any) -> Any:
        return JsonResponse({"ok": True})

    @require_fresh(MAX_AGE, "mfa")
    async def fresh_mfa(request: Any) -> Any:
        return JsonResponse({"ok": True})

    # Ahead of the contract app's catch-all, the fixed paths ahead of the route parameter.
    urlpatterns.insert(0, path("asvs/<str:route>", django_view, name="asvs"))
    urlpatterns.insert(0, path("asvs/fresh-mfa", fresh_mfa))
    urlpatterns.insert(0, path("asvs/fresh", fresh))


class AsvsDjangoClient(DjangoClient):
    """The Django contract client, on this module's routes under ``/asvs/``."""

    name = "django"

    def _send(self, route: str, payload: dict[str, Any]) -> Any:
        return super()._send(f"asvs/{route}", payload)

    def clone(self) -> Client:
        other = AsvsDjangoClient(Settings(), self._override)
        other.cookie = self.cookie
        return other


def make_django(settings: Settings) -> tuple[Client, SessionHub]:
    """The app on Django: the ``require_fresh`` decorator (a sync and an async view)."""
    configure_django()
    _install_django_routes()
    client = AsvsDjangoClient(settings)
    from sessionhub.integrations.django import get_hub

    return client, get_hub()
