"""The caller's settings: read, replace (PUT) and merge (PATCH)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..exceptions import InvalidPreferencesError
from .bodies import describe, field_errors, read_json
from .errors import ApiError, JSONResponse, ok
from .models import SettingsBody
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
    value = await read_json(request, _settings(request).server.max_body_bytes)
    try:
        body = SettingsBody.model_validate(value).model_dump(exclude_unset=True)
    except ValidationError as exc:
        if not isinstance(value, dict):
            raise ApiError(422, "validation_error", describe(exc, "field")) from exc
        return invalid(InvalidPreferencesError(_all_errors(request, value, field_errors(exc))))
    prefs = _hub(request).preferences
    try:
        method = prefs.replace if how == "replace" else prefs.patch
        return ok(await method(session.user_id, body))
    except InvalidPreferencesError as exc:
        return invalid(exc)


def _all_errors(request: Request, value: dict[str, Any], errors: dict[str, str]) -> dict[str, str]:
    """``errors`` of the shape, and the library's verdict on the fields of the right shape, so
    one answer names every bad field."""
    rest = {k: v for k, v in value.items() if k not in errors and v is not None}
    try:
        _hub(request).features.preferences.validate(rest)
    except InvalidPreferencesError as exc:
        return {**errors, **exc.errors}
    return errors


routes = [
    Route("/api/me/settings", get_settings, methods=["GET"]),
    Route("/api/me/settings", put_settings, methods=["PUT"]),
    Route("/api/me/settings", patch_settings, methods=["PATCH"]),
]
