"""Reading requests into the models of :mod:`.models`: JSON bodies (size, depth and media type
checked while reading), query parameters and headers, every failure a 4xx naming the input."""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from starlette.requests import Request

from .errors import ApiError
from .models import MessageId

M = TypeVar("M", bound=BaseModel)

MAX_DEPTH = 32
"""Deepest nesting of arrays and objects in a body. Deep enough for any real settings or message,
shallow enough that nothing after parsing (validation, encoding, Lua) can run out of stack."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_MESSAGE_ID: TypeAdapter[str] = TypeAdapter(MessageId)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


async def read_json(request: Request, max_bytes: int) -> Any:
    """The body as a JSON value; 413, 415 or 400 with a clear message otherwise."""
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
        value = json.loads(b"".join(chunks), parse_constant=_reject_constant)
    except RecursionError as exc:
        raise _too_deep() from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from exc
    _check_tree(value)
    return value


def _too_deep() -> ApiError:
    return ApiError(
        400, "json_too_deep", f"request body nests arrays and objects deeper than {MAX_DEPTH}"
    )


def _check_tree(value: Any) -> None:
    """400 for nesting deeper than :data:`MAX_DEPTH` or a lone UTF-16 surrogate in a string
    (``"\\ud800"`` parses, but is not text: UTF-8, Redis and every client refuse it)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise ApiError(
                    400,
                    "invalid_json",
                    "request body holds a lone UTF-16 surrogate (\\ud800-\\udfff); "
                    "send text as UTF-8 or as surrogate pairs",
                )
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth >= MAX_DEPTH:
            raise _too_deep()
        children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)


async def read_body(request: Request, model: type[M]) -> M:
    """The body as ``model``; 4xx as :func:`read_json`, 422 naming every bad field."""
    value = await read_json(request, request.app.state.settings.server.max_body_bytes)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ApiError(422, "validation_error", describe(exc, "field")) from exc


def read_query(request: Request, model: type[M]) -> M:
    """The query string as ``model``; 400 for a bad message id, 422 for anything else."""
    try:
        # An empty parameter (?cursor=) is as good as none, as it always was.
        return model.model_validate({k: v for k, v in request.query_params.items() if v})
    except ValidationError as exc:
        if any(e["type"] == "message_id" for e in exc.errors()):
            raise ApiError(400, "invalid_message_id", describe(exc, "query parameter")) from exc
        raise ApiError(422, "validation_error", describe(exc, "query parameter")) from exc


def message_id_header(request: Request, name: str) -> str | None:
    """The message id in header ``name``, if sent; 400 naming the header if it is not one."""
    value = request.headers.get(name)
    if not value:  # an empty Last-Event-ID is what a browser sends to start over
        return None
    try:
        return _MESSAGE_ID.validate_python(value)
    except ValidationError as exc:
        message = f"header '{name}' {_what(exc.errors()[0])}"
        raise ApiError(400, "invalid_message_id", message) from exc


def field_errors(exc: ValidationError) -> dict[str, str]:
    """Each bad top-level field of ``exc`` and what is wrong with it (or inside it)."""
    errors: dict[str, str] = {}
    for e in exc.errors():
        field, *inside = e["loc"]
        where = f"'{_name(tuple(inside))}' " if inside else ""
        errors[str(field)] = f"{where}{_what(e)}"
    return errors


def describe(exc: ValidationError, kind: str) -> str:
    """One line naming each bad input of ``exc`` (``kind`` says what it is) and what is allowed."""
    parts = []
    for error in exc.errors():
        if not error["loc"]:
            whole = "request body" if kind == "field" else "query string"
            parts.append(f"{whole} {_what(error)}" if error["type"] != "missing" else error["msg"])
        else:
            parts.append(f"{kind} '{_name(error['loc'])}' {_what(error)}")
    return "; ".join(parts)


def _name(loc: tuple[int | str, ...]) -> str:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else part
    return name


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_parsing": "must be an integer",
    "string_too_short": "must be at least {min_length} characters long",
    "string_too_long": "must be at most {max_length} characters long",
    "too_long": "must hold at most {max_length} items",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "string_pattern_mismatch": "must match {pattern}",
}
_TYPES = {
    "string_type": "a string",
    "int_type": "an integer",
    "dict_type": "a JSON object",
    "model_type": "a JSON object",
    "model_attributes_type": "a JSON object",
    "list_type": "a list",
}


def _what(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind in _TYPES:
        return f"must be {_TYPES[kind]}, not {_kind(error['input'])}"
    if kind in _MESSAGES:
        return _MESSAGES[kind].format(**error.get("ctx", {}))
    return error["msg"]
