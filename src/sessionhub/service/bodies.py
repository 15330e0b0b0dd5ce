"""Reading and validating JSON request bodies, with a size cap enforced while streaming."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from .errors import ApiError


async def read_json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object; 413, 415 or 400 with a clear message otherwise."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, "body_too_large", f"request body exceeds {max_bytes} bytes")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, "body_too_large", f"request body exceeds {max_bytes} bytes")
        chunks.append(chunk)
    try:
        value = json.loads(b"".join(chunks))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ApiError(422, "validation_error", "request body must be a JSON object")
    return value


def string_field(body: dict[str, Any], name: str, *, max_len: int, min_len: int = 1) -> str:
    """A required string field of the body, with length limits; 422 naming the field otherwise."""
    if name not in body:
        raise ApiError(422, "validation_error", f"field '{name}' is required")
    value = body[name]
    if not isinstance(value, str):
        kind = type(value).__name__ if value is not None else "null"
        raise ApiError(422, "validation_error", f"field '{name}' must be a string, not {kind}")
    if not min_len <= len(value) <= max_len:
        raise ApiError(
            422,
            "validation_error",
            f"field '{name}' must be {min_len} to {max_len} characters long",
        )
    return value
