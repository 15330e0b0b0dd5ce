"""Every error SessionHub raises derives from :class:`SessionHubError`."""

from __future__ import annotations


class SessionHubError(Exception):
    """Base class of every error SessionHub raises."""


class ConfigError(SessionHubError):
    """The configuration is invalid; the message names the key, the value and what is allowed."""


class StoreError(SessionHubError):
    """A session store could not complete an operation."""


class StoreUnavailable(StoreError):
    """The backing Redis cannot be reached or did not answer in time."""


class RedisTooOld(StoreError):
    """The Redis server is older than the commands SessionHub's scripts use."""


class InvalidToken(SessionHubError):
    """A cookie or token is malformed, tampered with, or signed with another key."""


class SessionNotFound(SessionHubError):
    """No live session exists for the token (never created, expired or destroyed)."""


class AuthenticationFailed(SessionHubError):
    """The username or password is wrong."""
