"""The OpenAPI 3.1 document of the service, built from its routing table (``GET /openapi.json``).

Every route of the app appears; a summary and the security scheme come from :data:`SUMMARIES`,
so a route added without an entry still shows up (with its path and method) and a test fails.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .. import __version__
from .auth import ADMIN_COOKIE
from .errors import JSONResponse
from .models import (
    MESSAGE_ID_PATTERN,
    AdminLoginBody,
    DailyQuery,
    LoginBody,
    MarkReadBody,
    MessageBody,
    MessagesQuery,
    OnlineUsersQuery,
    ReauthBody,
    RevokeBody,
    SendBody,
    SettingsBody,
    StreamQuery,
)

COOKIE, ADMIN, EITHER, NONE = "cookie", "admin", "cookie-or-admin", "none"
ADMIN_IF_REQUIRED = "admin-if-required"  # GET /metrics with METRICS.REQUIRE_AUTH


class Op(NamedTuple):
    """What the document says of one operation beyond its path and method."""

    summary: str
    auth: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    # Statuses besides those that follow from auth, body and query, each with when it happens.
    errors: dict[int, str] = {}  # noqa: RUF012 (a NamedTuple default is never mutated)
    status: int = 200
    stream: bool = False  # Server-Sent Events, resumed from Last-Event-ID
    enveloped: bool = True  # False: the answer is the data itself, not {"success", "data"}
    page: bool = False  # an HTML page for people, not JSON
    text: bool = False  # the answer is plain text, not JSON


_GONE = {404: "No such session for this user (`session_not_found`)"}
_FRESH = {
    401: "No live session, or one logged in longer ago than AUTH.REAUTH_MAX_AGE "
    "(`reauth_required`, with `reason`, `max_age` and `level`: POST /api/auth/reauthenticate)"
}

# The admin's routes to a user's sessions, served by the same handlers under /api/users/ and
# /api/admin/users/ (where the admin page's cookie reaches them).
_USER_SESSIONS: dict[tuple[str, str], Op] = {
    ("GET", ""): Op("A user's live sessions", ADMIN),
    ("DELETE", ""): Op("Revoke all of a user's sessions", ADMIN),
    ("DELETE", "/{handle}"): Op("Revoke one session of a user", ADMIN, errors=_GONE),
}

SUMMARIES: dict[tuple[str, str], Op] = {
    ("POST", "/api/auth/login"): Op(
        "Log in; sets the session cookie",
        NONE,
        body=LoginBody,
        errors={
            401: "Wrong username or password (`invalid_credentials`)",
            429: "Too many failed logins from this address, or for this username from it "
            "(`too_many_attempts`, with Retry-After); see AUTH.MAX_ATTEMPTS",
        },
    ),
    ("POST", "/api/auth/logout"): Op("Log out this session", NONE),
    ("POST", "/api/auth/reauthenticate"): Op(
        "Give the password again: a new token for this session, authenticated now",
        COOKIE,
        body=ReauthBody,
        errors={
            401: "No live session, or a wrong password (`invalid_credentials`)",
            429: "Too many failed logins (`too_many_attempts`, with Retry-After)",
        },
    ),
    ("GET", "/api/auth/me"): Op("The current session", COOKIE),
    ("POST", "/api/session/extend"): Op("Extend the current session", COOKIE),
    ("GET", "/api/session/stats"): Op("Session counts and storage mode", NONE),
    ("GET", "/api/health/redis"): Op(
        "Redis health (503 while degraded)", NONE, errors={503: "Degraded: serving from memory"}
    ),
    ("GET", "/healthz"): Op("Liveness", NONE),
    ("GET", "/api/admin/config"): Op("Effective configuration, secrets masked", ADMIN),
    ("GET", "/api/me/sessions"): Op("My live sessions (devices), the current one flagged", COOKIE),
    ("POST", "/api/me/sessions/revoke-others"): Op(
        "Revoke all my sessions but this one (needs a recent login)", COOKIE, errors=_FRESH
    ),
    ("DELETE", "/api/me/sessions/{handle}"): Op(
        "Revoke one of my sessions (needs a recent login)", COOKIE, errors={**_GONE, **_FRESH}
    ),
    **{
        (method, f"{users}/{{user_id}}/sessions{rest}"): op
        for users in ("/api/users", "/api/admin/users")
        for (method, rest), op in _USER_SESSIONS.items()
    },
    ("POST", "/api/admin/users/{user_id}/revoke"): Op(
        "End every session of a user at once, on every instance (account disabled)",
        ADMIN,
        body=RevokeBody,
    ),
    ("GET", "/api/me/settings"): Op("My settings (defaults filled in)", COOKIE),
    ("PUT", "/api/me/settings"): Op("Replace my settings", COOKIE, body=SettingsBody),
    ("PATCH", "/api/me/settings"): Op("Merge into my settings", COOKIE, body=SettingsBody),
    ("POST", "/api/presence/heartbeat"): Op("Mark me active now", COOKIE),
    ("GET", "/api/presence/online"): Op("How many users are online", EITHER),
    ("GET", "/api/presence/online/users"): Op(
        "A page of online users", EITHER, query=OnlineUsersQuery
    ),
    ("GET", "/api/presence/daily"): Op("Unique active users on a day", EITHER, query=DailyQuery),
    ("GET", "/api/users/{user_id}/presence"): Op(
        "A user's presence (self or admin)",
        EITHER,
        errors={403: "Another user's presence without the admin key (`forbidden`)"},
    ),
    ("POST", "/api/messages"): Op(
        "Send a message to another user",
        COOKIE,
        body=SendBody,
        status=201,
        errors={
            404: "No such user (`user_not_found`)",
            429: "Over MESSAGES.SEND_RATE (`rate_limited`, with Retry-After)",
        },
    ),
    ("POST", "/api/messages/broadcast"): Op(
        "Send a message to every online user", ADMIN, body=MessageBody
    ),
    ("POST", "/api/users/{user_id}/messages"): Op(
        "Send a message to a user",
        ADMIN,
        body=MessageBody,
        status=201,
        errors={422: "A bad body (`validation_error`) or a user_id over 128 characters"},
    ),
    ("GET", "/api/me/messages"): Op("A page of my messages", COOKIE, query=MessagesQuery),
    ("POST", "/api/me/messages/read"): Op("Mark messages read", COOKIE, body=MarkReadBody),
    ("GET", "/api/me/messages/stream"): Op(
        "My messages, live (Server-Sent Events)", COOKIE, query=StreamQuery, stream=True
    ),
    ("GET", "/openapi.json"): Op("This document", NONE, enveloped=False),
    ("GET", "/docs"): Op("This document, browsable (Swagger UI, served locally)", NONE, page=True),
    ("GET", "/admin"): Op("The admin page: live figures, a user's sessions", NONE, page=True),
    ("POST", "/api/admin/login"): Op(
        "Trade an admin key for the admin page's cookie (HttpOnly, SameSite=Strict)",
        NONE,
        body=AdminLoginBody,
        errors={
            403: "Not one of ADMIN.API_KEYS (`admin_key_invalid`)",
            429: "Too many wrong keys from this address (`too_many_attempts`, with Retry-After)",
        },
    ),
    ("POST", "/api/admin/logout"): Op("Clear the admin page's cookie", NONE),
    ("GET", "/api/admin/overview"): Op(
        "Redis health, sessions by store, online users, memory, the last hour per minute", ADMIN
    ),
    ("GET", "/metrics"): Op(
        "Metrics in the Prometheus text format (the admin key with METRICS.REQUIRE_AUTH)",
        ADMIN_IF_REQUIRED,
        text=True,
    ),
}

_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    COOKIE: [{"sessionCookie": []}],
    ADMIN: [{"adminKey": []}, {"adminCookie": []}],
    EITHER: [{"sessionCookie": []}, {"adminKey": []}, {"adminCookie": []}],
    NONE: [],
    ADMIN_IF_REQUIRED: [{}, {"adminKey": []}],
}
_AUTH_ERRORS: dict[str, dict[int, str]] = {
    COOKIE: {401: "No live session (`not_authenticated`, `invalid_session`, `session_expired`)"},
    ADMIN: {
        401: "No admin key (`admin_key_required`)",
        403: "A wrong admin key (`admin_key_invalid`)",
    },
    EITHER: {
        401: "Neither a live session nor an admin key",
        403: "A wrong admin key (`admin_key_invalid`)",
    },
    NONE: {},
}
_AUTH_ERRORS[ADMIN_IF_REQUIRED] = _AUTH_ERRORS[ADMIN]
_BODY_ERRORS = {
    400: "Not JSON (`invalid_json`) or nested too deep (`json_too_deep`)",
    413: "Body over SERVER.MAX_BODY_BYTES (`body_too_large`)",
    415: "Body not sent as application/json (`unsupported_media_type`)",
    422: "A field is missing, mistyped or out of range (`validation_error`, names the field)",
}
_QUERY_ERRORS = {422: "A query parameter out of range (`validation_error`, names it)"}
_ID_ERRORS = {400: "A cursor or Last-Event-ID that is not a message id (`invalid_message_id`)"}
_JSON = "application/json"


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """``model``'s JSON Schema, its nested definitions moved into ``components``."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": _text(prop)}
        for name, prop in schema["properties"].items()
    ]


def _text(prop: dict[str, Any]) -> dict[str, Any]:
    """``prop`` without its ``null`` option: a query string leaves a parameter out instead."""
    options = [o for o in prop.get("anyOf", ()) if o.get("type") != "null"]
    if len(options) != 1:
        return prop
    rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
    return {**rest, **options[0]}


def _operation(route: Route, method: str, components: dict[str, Any]) -> dict[str, Any]:
    op = SUMMARIES.get((method, route.path), Op(route.name, NONE))
    parameters: list[dict[str, Any]] = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for p in re.findall(r"{(\w+)}", route.path)
    ]
    errors = {**_AUTH_ERRORS[op.auth]}
    operation: dict[str, Any] = {
        "summary": op.summary,
        "operationId": f"{method.lower()}_{route.name}",
        "security": _SECURITY[op.auth],
    }
    if op.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {_JSON: {"schema": _schema(op.body, components)}},
        }
        errors.update(_BODY_ERRORS)
    if op.query is not None:
        parameters += _query_parameters(op.query)
        errors.update(_QUERY_ERRORS)
        if "cursor" in op.query.model_fields or op.stream:
            errors.update(_ID_ERRORS)
    if op.stream:
        parameters.append(
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": MESSAGE_ID_PATTERN},
            }
        )
    errors.update(op.errors)
    if parameters:
        operation["parameters"] = parameters
    success = _json('`{"success": true, "data": ...}`', "Success")
    if op.stream:
        success = {"description": "Server-Sent Events", "content": {"text/event-stream": {}}}
    elif op.page:
        success = {
            "description": op.summary,
            "content": {"text/html": {"schema": {"type": "string"}}},
        }
    elif op.text:
        success = {"description": op.summary, "content": {"text/plain": {}}}
    elif not op.enveloped:
        success = {"description": op.summary, "content": {_JSON: {"schema": {"type": "object"}}}}
    operation["responses"] = {
        str(op.status): success,
        **{str(status): _json(text, "Error") for status, text in sorted(errors.items())},
    }
    if 503 in errors:  # degraded health answers the success envelope with 503
        operation["responses"]["503"] = _json(errors[503], "Success")
    return operation


def _json(description: str, envelope: str) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{envelope}"}
    return {"description": description, "content": {_JSON: {"schema": schema}}}


_ENVELOPES: dict[str, Any] = {
    "Success": {
        "type": "object",
        "required": ["success", "data"],
        "properties": {"success": {"const": True}, "data": {}},
    },
    "Error": {
        "type": "object",
        "required": ["success", "error"],
        "properties": {
            "success": {"const": False},
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "fields": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "description": "Settings: each bad field and what is wrong with it",
                    },
                },
            },
        },
    },
}


def build_document(routes: list[BaseRoute], cookie_name: str) -> dict[str, Any]:
    """The OpenAPI document for ``routes``."""
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, Any] = dict(_ENVELOPES)
    for route in routes:
        if not isinstance(route, Route):
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            operation = _operation(route, method, components)
            paths.setdefault(route.path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "SessionHub", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": cookie_name},
                "adminKey": {"type": "http", "scheme": "bearer"},
                "adminCookie": {"type": "apiKey", "in": "cookie", "name": ADMIN_COOKIE},
            },
        },
    }


async def openapi(request: Request) -> Response:
    settings = request.app.state.settings
    return JSONResponse(build_document(request.app.routes, settings.session.cookie_name))


routes = [Route("/openapi.json", openapi, methods=["GET"])]
