"""The same small app on every framework, three ways: SessionHub's adapter (``sessionhub``), the
session its users would pick instead (``peer``) and no session at all (``floor``).

Three views, ``GET /login`` (stores ``user`` and a counter ``n``), ``GET /read`` (answers the
signed-in user, read from the session as the framework's users read it) and ``GET /read-modify``
(increments the counter). The floor's views answer the same bodies from a fresh dict: the
framework with no session layer, the most any session back end could reach.

Peers: Flask-Session 0.8 on Redis (Flask); Django's cache backend on Django's RedisCache
(Django); starsessions 2 with its RedisStore (Starlette); Litestar's server-side sessions on its
RedisStore (Litestar); Quart's own signed cookie (Quart: no Redis-backed session for Quart is
maintained).

The same apps run in process (``bench_adapters.py``, ``callgrind.py``) and behind a server
(``bench_cache.py``)::

    BENCH_FRAMEWORK=flask BENCH_SIDE=sessionhub BENCH_REDIS_URL=redis://... \\
        gunicorn -w 1 'adapter_apps:wsgi_app()'
    BENCH_FRAMEWORK=starlette BENCH_SIDE=peer BENCH_REDIS_URL=redis://... \\
        python adapter_apps.py --port 8001
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

SECRET = "bench-secret-key-0123456789"
SIDES = ("sessionhub", "peer", "floor")
PATHS = {"login": "/login", "read": "/read", "read-modify": "/read-modify"}

PEERS = {
    "flask": "Flask-Session 0.8 (Redis)",
    "django": "Django's cache backend on RedisCache",
    "starlette": "starsessions 2 (RedisStore)",
    "litestar": "Litestar server-side sessions (RedisStore)",
    "quart": "Quart's signed cookie (no Redis)",
}


def view(session: Any, action: str) -> dict[str, Any]:
    """What every app answers; ``session`` is the framework's session (a fresh dict for the
    floor)."""
    if action == "login":
        session["user"] = "alice"
        session["n"] = 0
        return {"ok": True}
    if action == "read":
        return {"user": session.get("user")}
    if action == "read-modify":
        session["n"] = session.get("n", 0) + 1
        return {"user": session.get("user"), "n": session["n"]}
    return {"ok": True}  # /healthz, for the servers' readiness check


def floor_session() -> dict[str, Any]:
    """What the floor's views read: a signed-in session that no store holds."""
    return {"user": "alice", "n": 0}


def flask_app(url: str, side: str) -> Any:
    """Flask with SessionHub, Flask-Session 0.8 on Redis, or no session."""
    import flask
    import redis

    app = flask.Flask("bench")
    app.config.update(SECRET_KEY=SECRET, SESSION_TYPE="redis", SESSION_PERMANENT=True)
    app.config["SESSION_REDIS"] = redis.Redis.from_url(url)

    @app.get("/<action>")
    def handle(action: str) -> Any:
        return view(floor_session() if side == "floor" else flask.session, action)

    if side == "peer":
        import flask_session

        flask_session.Session(app)
    elif side == "sessionhub":
        from sessionhub.integrations.flask import FlaskSessionHub

        FlaskSessionHub(app)
    return app


def quart_app(url: str, side: str) -> Any:
    """Quart with SessionHub, its own cookie sessions, or no session."""
    import quart

    app = quart.Quart("bench")
    app.config.update(SECRET_KEY=SECRET, SESSION_PERMANENT=True)
    app.config["SESSIONHUB"] = {"REDIS": {"URL": url}}

    @app.get("/<action>")
    async def handle(action: str) -> Any:
        return view(floor_session() if side == "floor" else quart.session, action)

    if side == "sessionhub":
        from sessionhub.integrations.quart import QuartSessionHub

        QuartSessionHub(app)
    return app


def starlette_app(url: str, side: str) -> Any:
    """Starlette with SessionHub's middleware, starsessions on its RedisStore, or no session."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def handle(request: Request) -> JSONResponse:
        session = floor_session() if side == "floor" else request.session
        return JSONResponse(view(session, request.path_params["action"]))

    middleware = []
    if side == "peer":
        from starsessions import SessionAutoloadMiddleware
        from starsessions import SessionMiddleware as Peer
        from starsessions.stores.redis import RedisStore

        # As starsessions documents it: the store on Redis, sessions loaded for every request.
        middleware = [
            Middleware(Peer, store=RedisStore(url), lifetime=7200, cookie_https_only=False),
            Middleware(SessionAutoloadMiddleware),
        ]
    elif side == "sessionhub":
        from sessionhub.integrations.asgi import SessionMiddleware

        settings = {"REDIS": {"URL": url}}
        middleware = [Middleware(SessionMiddleware, secret_key=SECRET, settings=settings)]
    return Starlette(routes=[Route("/{action}", handle)], middleware=middleware)


def litestar_app(url: str, side: str) -> Any:
    """Litestar with SessionHub's plugin, its server-side sessions on RedisStore, or none."""
    from bench_adapters_litestar import make_app

    return make_app(url, side, view, floor_session)


def django_handler(url: str, side: str) -> Any:
    """Django's WSGI handler with SessionHub's engine, the cache backend on RedisCache, or no
    session middleware."""
    import django
    from django.conf import settings as dj

    if not dj.configured:
        dj.configure(
            SECRET_KEY=SECRET,
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF="bench_adapters_django",
            MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
            INSTALLED_APPS=["django.contrib.sessions"],
            DATABASES={},
            CACHES={
                "default": {
                    "BACKEND": "django.core.cache.backends.redis.RedisCache",
                    "LOCATION": url,
                }
            },
            SESSIONHUB={"REDIS": {"URL": url}},
            USE_TZ=True,
        )
        django.setup()
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    engine = (
        "django.contrib.sessions.backends.cache"
        if side == "peer"
        else ("sessionhub.integrations.django")
    )
    middleware = [] if side == "floor" else ["django.contrib.sessions.middleware.SessionMiddleware"]
    # The handler reads both when it is built; each side's handler keeps its own.
    with override_settings(SESSION_ENGINE=engine, MIDDLEWARE=middleware):
        return WSGIHandler()


FRAMEWORKS: dict[str, tuple[Callable[[str, str], Any], str, str]] = {
    # name: (app factory, interface, session cookie)
    "flask": (flask_app, "wsgi", "session"),
    "django": (django_handler, "wsgi", "sessionid"),
    "starlette": (starlette_app, "asgi", "session"),
    "quart": (quart_app, "asgi", "session"),
    "litestar": (litestar_app, "asgi", "session"),
}


def _from_env() -> Any:
    factory, _, _ = FRAMEWORKS[os.environ["BENCH_FRAMEWORK"]]
    return factory(os.environ["BENCH_REDIS_URL"], os.environ.get("BENCH_SIDE", "sessionhub"))


def wsgi_app() -> Any:
    """The WSGI app the environment names (for gunicorn: ``'adapter_apps:wsgi_app()'``)."""
    return _from_env()


def main() -> None:
    """Serve the ASGI app the environment names with uvicorn, one worker."""
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(_from_env(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
