"""Compact JSON text: how stored values (session data, message bodies) are encoded."""

from __future__ import annotations

import json
from typing import Any

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# One encoder for every value: json.dumps with options builds a new one per call (profiled).


def compact(value: Any) -> str:
    """``value`` as compact JSON; ``TypeError``/``ValueError`` for what JSON cannot hold (NaN)."""
    return _ENCODER.encode(value)
