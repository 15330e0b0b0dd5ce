"""The service's JSON bodies: orjson's speed with the standard library's reach."""

from __future__ import annotations

import json

from sessionhub.service.errors import JSONResponse, ok


def test_body_is_compact_utf8_json() -> None:
    """A body is the same JSON the standard library writes: compact, UTF-8, not \\u-escaped."""
    data = {"success": True, "data": {"name": "张三", "n": [1, 2.5, None]}}
    response = JSONResponse(data)
    assert response.body == json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    assert response.headers["content-type"] == "application/json"


def test_values_orjson_refuses_still_encode() -> None:
    """An integer beyond 64 bits (say, in a user's custom settings) still encodes, exactly."""
    response = ok({"big": 2**70, "keys": {1: "int key"}})
    assert json.loads(response.body) == {
        "success": True,
        "data": {"big": 2**70, "keys": {"1": "int key"}},
    }
