"""Time formatting shared by the library views and the HTTP service."""

from __future__ import annotations

from datetime import datetime, timezone


def iso(ms: int) -> str:
    """A Unix time in milliseconds as ISO 8601 UTC with a ``Z``."""
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
