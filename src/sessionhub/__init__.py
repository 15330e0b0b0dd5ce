"""SessionHub: server-side sessions on Redis with an in-memory fallback.

The public API is importable from here::

    from sessionhub import SessionHub, Settings, load_settings, InvalidTokenError

The hub, the settings and the session are loaded on first use, not when the package is
imported: every ``sessionhub.*`` module imports this one first, and the command line, the
framework adapters and the service should not pay for redis-py and pydantic before they need
them. Nothing here imports the HTTP service or a web framework.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .exceptions import (
    ConfigError,
    ConflictError,
    DataError,
    InvalidCursorError,
    InvalidInputError,
    InvalidMessageError,
    InvalidPreferencesError,
    InvalidTokenError,
    LockTimeoutError,
    NoRedisConfiguredError,
    RateLimitedError,
    ReauthRequiredError,
    RedisConfigError,
    RedisTooOldError,
    SessionHubError,
    StoreError,
    TooManyAttemptsError,
)

if TYPE_CHECKING:
    from .config import Settings, load_settings
    from .hub import AsyncSessionHub, SessionHub
    from .session import Session

__version__ = "0.1.0"

__all__ = [
    "AsyncSessionHub",
    "ConfigError",
    "ConflictError",
    "DataError",
    "InvalidCursorError",
    "InvalidInputError",
    "InvalidMessageError",
    "InvalidPreferencesError",
    "InvalidTokenError",
    "LockTimeoutError",
    "NoRedisConfiguredError",
    "RateLimitedError",
    "ReauthRequiredError",
    "RedisConfigError",
    "RedisTooOldError",
    "Session",
    "SessionHub",
    "SessionHubError",
    "Settings",
    "StoreError",
    "TooManyAttemptsError",
    "load_settings",
]

# The lazily loaded names and the submodule each comes from.
_LAZY = {
    "AsyncSessionHub": "hub",
    "SessionHub": "hub",
    "Session": "session",
    "Settings": "config",
    "load_settings": "config",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
