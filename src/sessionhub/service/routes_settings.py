"""The caller's settings: read, replace (PUT) and merge (PATCH)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..exceptions import InvalidPreferencesError
from .bodies import read_json_object
from .errors import JSONResponse, ok
from .routes import _hub, _settings, current_session


def invalid(exc: InvalidPreferencesError) -> JSONResponse:
    """422 naming every bad field: ``error.fields`` maps each one to what is wrong."""
    body = {
        "success": False,
        "error": {"code": "validation_error", "message": str(exc), "fields": exc.errors},
    }
    return JSONResponse(body, status_code=422)


async def get_settings(request: Request) -> Response:
    session = await current_session(request)
    assert session.user_id is not None
    return ok(await _hub(request).preferences.get(session.user_id))


async def put_settings(request: Request) -> Response:
    return await _write(request, "replace")


async def patch_settings(request: Request) -> Response:
    return await _write(request, "patch")


async def _write(request: Request, how: str) -> Response:
    session = await current_session(request)
    assert session.user_id is not None
    body = await read_json_object(request, _settings(request).server.max_body_bytes)
    prefs = _hub(request).preferences
    try:
        method = prefs.replace if how == "replace" else prefs.patch
        return ok(await method(session.user_id, body))
    except InvalidPreferencesError as exc:
        return invalid(exc)


routes = [
    Route("/api/me/settings", get_settings, methods=["GET"]),
    Route("/api/me/settings", put_settings, methods=["PUT"]),
    Route("/api/me/settings", patch_settings, methods=["PATCH"]),
]
