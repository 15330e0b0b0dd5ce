"""The seed's demo app on Flask with SessionHub sessions: ``python examples/flask_app.py``.

Redis comes from ``REDIS_URL`` (or ``config.yaml``, see ``config.example.yaml``); the port from
``PORT`` (default 5001: the service itself is on 5000). Try it::

    curl -c jar -H 'Content-Type: application/json' \\
        -d '{"username": "alice", "password": "alice-pw"}' localhost:5001/login
    curl -b jar -c jar localhost:5001/visits
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from flask import Flask, jsonify, request, session

from sessionhub.config import load_settings
from sessionhub.integrations.flask import (
    FlaskSessionHub,
    current_user_id,
    login_user,
    logout_user,
)

# A demo user table: never keep real passwords like this.
USERS = {"alice": "alice-pw", "bob": "bob-pw"}

app = Flask(__name__)
app.config["SESSIONHUB"] = load_settings()  # REDIS_URL, SECRET_KEY, config.yaml
sessions = FlaskSessionHub(app)


def envelope(data: Any, status: int = 200) -> Any:
    """The seed's success envelope."""
    return jsonify({"success": True, "data": data}), status


def failure(status: int, code: str, message: str) -> Any:
    """The seed's error envelope."""
    return jsonify({"success": False, "error": {"code": code, "message": message}}), status


@app.post("/login")
def login() -> Any:
    body = request.get_json(silent=True) or {}
    username, password = str(body.get("username", "")), str(body.get("password", ""))
    expected = USERS.get(username)
    if expected is None or not hmac.compare_digest(expected, password):
        return failure(401, "invalid_credentials", "wrong username or password")
    login_user(username)  # new token, bound to the user; the anonymous data is kept
    return envelope({"user_id": username})


@app.post("/logout")
def logout() -> Any:
    was = current_user_id()
    logout_user()
    return envelope({"logged_out": was is not None})


@app.get("/visits")
def visits() -> Any:
    session["visits"] = session.get("visits", 0) + 1
    return jsonify({"visits": session["visits"]})


@app.get("/api/session/stats")
def stats() -> Any:
    data = sessions.hub().stats()
    return envelope({k: data[k] for k in ("total_sessions", "redis_available")})


@app.get("/api/health/redis")
def health() -> Any:
    data = sessions.hub().health()
    body = {k: data[k] for k in ("status", "message", "session_count")}
    return envelope(body, 200 if data["status"] == "healthy" else 503)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "5001"))
    print("Demo users (username / password):")
    for name, password in USERS.items():
        print(f"  {name} / {password}")
    app.run(host="127.0.0.1", port=port)
