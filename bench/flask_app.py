"""The same small Flask app on two session back ends, served by gunicorn in the benchmarks.

``BENCH_FLASK_BACKEND=flask-session`` (the peer: Flask-Session 0.8, Redis interface),
``sessionhub`` (SessionHub's Flask integration, when this build has one) or ``floor`` (no
session at all: the endpoints answer as if alice were signed in).
``BENCH_REDIS_URL`` names the Redis.

    BENCH_REDIS_URL=redis://127.0.0.1:7001/0 gunicorn -w 2 -b 127.0.0.1:8002 flask_app:app
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from flask import Flask, jsonify, request, session

SECRET = "bench-secret-key-0123456789"


def sessionhub_flask_extension() -> Any:
    """SessionHub's Flask extension class, or ``None`` when Flask is not installed."""
    try:
        from sessionhub.integrations.flask import FlaskSessionHub
    except ImportError:
        return None
    return FlaskSessionHub


def create_app() -> Flask:
    backend = os.environ.get("BENCH_FLASK_BACKEND", "flask-session")
    url = os.environ["BENCH_REDIS_URL"]
    app = Flask(__name__)
    app.config["SECRET_KEY"] = SECRET
    if backend == "flask-session":
        from flask_session import Session as FlaskSession

        app.config.update(
            SESSION_TYPE="redis",
            SESSION_REDIS=redis.Redis.from_url(url),
            SESSION_PERMANENT=True,
            PERMANENT_SESSION_LIFETIME=7200,
        )
        FlaskSession(app)
    elif backend == "floor":
        return floor_app(app)
    else:
        extension = sessionhub_flask_extension()
        if extension is None:
            raise RuntimeError("sessionhub.integrations.flask is not available in this build")
        app.config.update(
            SESSIONHUB={
                "SECRET_KEY": SECRET,
                "REDIS": {"URL": url},
                "SESSION": {"TYPE": "redis"},
            }
        )
        extension(app)

    @app.post("/api/auth/login")
    def login() -> Any:
        session.clear()
        session["user_id"] = "alice"
        session["user_agent"] = request.headers.get("User-Agent", "")
        session["ip"] = request.remote_addr or ""
        session["created_at"] = int(time.time() * 1000)
        return jsonify(success=True, data={"user_id": "alice"})

    @app.get("/api/auth/me")
    def me() -> Any:
        user = session.get("user_id")
        if user is None:
            return jsonify(success=False), 401
        return jsonify(success=True, data={"user_id": user, "created_at": session["created_at"]})

    @app.post("/api/session/extend")
    def extend() -> Any:
        user = session.get("user_id")
        if user is None:
            return jsonify(success=False), 401
        session["extended_at"] = int(time.time() * 1000)
        return jsonify(success=True, data={"user_id": user})

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(success=True)

    return app


def floor_app(app: Flask) -> Flask:
    """The same routes and bodies with no session behind them."""

    @app.get("/api/auth/me")
    def me() -> Any:
        return jsonify(success=True, data={"user_id": "alice", "created_at": 0})

    @app.post("/api/session/extend")
    def extend() -> Any:
        return jsonify(success=True, data={"user_id": "alice"})

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(success=True)

    return app


app = create_app() if "BENCH_REDIS_URL" in os.environ else None
