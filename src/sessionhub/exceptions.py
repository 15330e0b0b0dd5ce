"""Every error SessionHub raises derives from :class:`SessionHubError`.

A caller's mistake also derives from :class:`ValueError` (a bad value) or :class:`TypeError` (a
value that cannot be stored), as redis-py does, so code that already catches those keeps working.
"""

from __future__ import annotations


class SessionHubError(Exception):
    """Base class of every error SessionHub raises."""


class ConfigError(SessionHubError, ValueError):
    """The configuration is invalid; the message names the key, the value and what is allowed."""


class RedisConfigError(ConfigError):
    """Redis refuses what the configuration says (credentials, ACL permissions, TLS, the
    Sentinel master name): a mistake to fix, not an outage to wait out."""


class InvalidInputError(SessionHubError, ValueError):
    """A caller passed a value SessionHub does not accept; the message says which and why."""


class InvalidTokenError(InvalidInputError):
    """A cookie or token is malformed, tampered with, or signed with another key."""


class InvalidCursorError(InvalidInputError):
    """A paging cursor or a message id is malformed or out of range."""


class InvalidMessageError(InvalidInputError):
    """A message body is not JSON or is larger than ``MESSAGES.MAX_BODY_BYTES``."""


class InvalidPreferencesError(InvalidInputError):
    """A settings document breaks the schema; ``errors`` maps each field to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class DataError(SessionHubError, TypeError):
    """A session key is not a string, or a value cannot be stored as JSON."""


class RateLimitedError(SessionHubError):
    """A limit was reached; ``retry_after`` is how many seconds until it resets."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyAttemptsError(RateLimitedError):
    """Too many failed logins in the window; ``scope`` says whether per address or per user."""

    def __init__(self, retry_after: int, scope: str, limit: int, window_s: int) -> None:
        super().__init__(
            f"{limit} failed logins for this {scope} within {window_s} s; retry in {retry_after} s",
            retry_after,
        )
        self.scope = scope


class ReauthRequiredError(SessionHubError):
    """The session's user must authenticate again: not logged in, logged in too long ago, or at
    a weaker level than needed. ``body()`` is the machine-readable 401 every adapter answers."""

    def __init__(self, reason: str, message: str, *, max_age: int, level: str | None) -> None:
        super().__init__(message)
        self.reason = reason
        """``not_authenticated``, ``stale`` or ``level``."""
        self.max_age = max_age
        self.level = level

    def body(self) -> dict[str, object]:
        """The JSON error envelope: code ``reauth_required`` and what a fresh login must meet."""
        error = {"code": "reauth_required", "message": str(self), "reason": self.reason}
        return {"success": False, "error": {**error, "max_age": self.max_age, "level": self.level}}


class ConflictError(SessionHubError):
    """Concurrent writers kept changing the same value; the caller may try again."""


class LockTimeoutError(SessionHubError, TimeoutError):
    """A session's lock was still held by another request when the wait limit (``block``) ran
    out."""


class StoreError(SessionHubError):
    """A session store could not complete an operation."""


class RedisTooOldError(StoreError):
    """The Redis server is older than the commands SessionHub's scripts use."""


class NoRedisConfiguredError(StoreError):
    """A memory-only hub was asked to reach Redis (a bug in the operation, not the caller)."""
