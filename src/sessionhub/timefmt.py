"""Time formatting shared by the library views and the HTTP service."""

from __future__ import annotations

import functools
from datetime import datetime, timezone


def iso(ms: int) -> str:
    """A Unix time in milliseconds as ISO 8601 UTC with a ``Z`` (whole seconds)."""
    return _iso_seconds(ms // 1000)


@functools.lru_cache(maxsize=4096)
def _iso_seconds(seconds: int) -> str:
    # Cached: the same few seconds are formatted over and over on a busy server (profiled).
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
