"""JSON text, in one place: compact text for stored values, canonical text for settings, UTF-8
bytes for HTTP bodies, webhooks and log lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Any

import orjson

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# One encoder for every value: json.dumps with options builds a new one per call (profiled).
_SCALARS: dict[type, Callable[[Any], str]] = {
    str: encode_basestring,
    int: int.__repr__,
    bool: lambda flag: "true" if flag else "false",
    type(None): lambda _: "null",
}
"""What the encoder writes for these exact types, without the C encoder it builds per call for
anything but a string (most session values are one of these; profiled)."""


def compact(value: Any) -> str:
    """``value`` as compact JSON; ``TypeError``/``ValueError`` for what JSON cannot hold (NaN)."""
    scalar = _SCALARS.get(type(value))
    return scalar(value) if scalar is not None else _ENCODER.encode(value)


_CANONICAL = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, sort_keys=True, allow_nan=False
)


def canonical(value: Any) -> str:
    """``value`` as compact JSON with its keys sorted: equal values give equal text (a user's
    settings are compared and sized by it)."""
    return _CANONICAL.encode(value)


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON bytes, the same text :func:`compact` writes.

    orjson, because encoding was a twentieth of an authenticated request's CPU time with the
    standard library (profiled). What orjson refuses (an integer beyond 64 bits in a user's
    settings, a non-string key) goes through :func:`compact`, so no value JSON can carry fails.
    """
    try:
        return orjson.dumps(value)
    except TypeError:
        return compact(value).encode()
