"""JSON responses and errors: every error is ``{"success": false, "error": {code, message}}``."""

from __future__ import annotations

import logging
from typing import Any

import starlette.responses
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..exceptions import RateLimitedError, ReauthRequiredError, SessionHubError
from ..jsontext import dumps
from .logs import HEADER, REQUEST_ID

log = logging.getLogger("sessionhub.service")


class ApiError(SessionHubError):
    """An error answered with its status, a stable code and a message for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class JSONResponse(starlette.responses.JSONResponse):
    """Starlette's ``JSONResponse`` with the body encoded by :func:`sessionhub.jsontext.dumps`."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


def ok(data: Any, status: int = 200) -> JSONResponse:
    """A success envelope."""
    return JSONResponse({"success": True, "data": data}, status_code=status)


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """An error envelope."""
    body = {"success": False, "error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status)


def too_many(code: str, exc: RateLimitedError) -> JSONResponse:
    """The 429 for a limit reached, with ``Retry-After`` saying when it resets."""
    response = error_response(429, code, str(exc))
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


_HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message)


async def reauth_required_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ReauthRequiredError)
    return JSONResponse(exc.body(), status_code=401)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, code, message)


async def unexpected_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    response = error_response(500, "internal_error", "internal error; see the server log")
    # Answered outside the middleware that echoes the id, which matters most here.
    request_id = REQUEST_ID.get()
    if request_id is not None:
        response.headers[HEADER] = request_id
    return response
