"""SessionHub: server-side sessions on Redis with an in-memory fallback."""

from __future__ import annotations

__version__ = "0.1.0"
