"""The OpenAPI 3.1 document of the service, built from its routing table (``GET /openapi.json``).

Every route of the app appears; a summary and the security scheme come from :data:`SUMMARIES`,
so a route added without an entry still shows up (with its path and method) and a test fails.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .. import __version__
from .errors import JSONResponse

COOKIE, ADMIN, EITHER, NONE = "cookie", "admin", "cookie-or-admin", "none"

SUMMARIES: dict[tuple[str, str], tuple[str, str]] = {
    ("POST", "/api/auth/login"): ("Log in; sets the session cookie", NONE),
    ("POST", "/api/auth/logout"): ("Log out this session", NONE),
    ("GET", "/api/auth/me"): ("The current session", COOKIE),
    ("POST", "/api/session/extend"): ("Extend the current session", COOKIE),
    ("GET", "/api/session/stats"): ("Session counts and storage mode", NONE),
    ("GET", "/api/health/redis"): ("Redis health (503 while degraded)", NONE),
    ("GET", "/healthz"): ("Liveness", NONE),
    ("GET", "/api/admin/config"): ("Effective configuration, secrets masked", ADMIN),
    ("GET", "/api/me/sessions"): ("My live sessions (devices), the current one flagged", COOKIE),
    ("POST", "/api/me/sessions/revoke-others"): ("Revoke all my sessions but this one", COOKIE),
    ("DELETE", "/api/me/sessions/{handle}"): ("Revoke one of my sessions", COOKIE),
    ("GET", "/api/users/{user_id}/sessions"): ("A user's live sessions", ADMIN),
    ("DELETE", "/api/users/{user_id}/sessions"): ("Revoke all of a user's sessions", ADMIN),
    ("DELETE", "/api/users/{user_id}/sessions/{handle}"): ("Revoke one session of a user", ADMIN),
    ("GET", "/api/me/settings"): ("My settings (defaults filled in)", COOKIE),
    ("PUT", "/api/me/settings"): ("Replace my settings", COOKIE),
    ("PATCH", "/api/me/settings"): ("Merge into my settings", COOKIE),
    ("POST", "/api/presence/heartbeat"): ("Mark me active now", COOKIE),
    ("GET", "/api/presence/online"): ("How many users are online", EITHER),
    ("GET", "/api/presence/online/users"): ("A page of online users", EITHER),
    ("GET", "/api/presence/daily"): ("Unique active users on a day", EITHER),
    ("GET", "/api/users/{user_id}/presence"): ("A user's presence (self or admin)", EITHER),
    ("POST", "/api/messages"): ("Send a message to another user", COOKIE),
    ("POST", "/api/messages/broadcast"): ("Send a message to every online user", ADMIN),
    ("POST", "/api/users/{user_id}/messages"): ("Send a message to a user", ADMIN),
    ("GET", "/api/me/messages"): ("A page of my messages", COOKIE),
    ("POST", "/api/me/messages/read"): ("Mark messages read", COOKIE),
    ("GET", "/api/me/messages/stream"): ("My messages, live (Server-Sent Events)", COOKIE),
    ("GET", "/openapi.json"): ("This document", NONE),
}

_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    COOKIE: [{"sessionCookie": []}],
    ADMIN: [{"adminKey": []}],
    EITHER: [{"sessionCookie": []}, {"adminKey": []}],
    NONE: [],
}


def build_document(routes: list[BaseRoute], cookie_name: str) -> dict[str, Any]:
    """The OpenAPI document for ``routes``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route):
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            summary, auth = SUMMARIES.get((method, route.path), (route.name, NONE))
            operation: dict[str, Any] = {
                "summary": summary,
                "operationId": f"{method.lower()}_{route.name}",
                "security": _SECURITY[auth],
                "responses": {"200": {"description": '`{"success": true, "data": ...}`'}},
            }
            params = re.findall(r"{(\w+)}", route.path)
            if params:
                operation["parameters"] = [
                    {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                    for p in params
                ]
            paths.setdefault(route.path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "SessionHub", "version": __version__},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": cookie_name},
                "adminKey": {"type": "http", "scheme": "bearer"},
            }
        },
    }


async def openapi(request: Request) -> Response:
    settings = request.app.state.settings
    return JSONResponse(build_document(request.app.routes, settings.session.cookie_name))


routes = [Route("/openapi.json", openapi, methods=["GET"])]
