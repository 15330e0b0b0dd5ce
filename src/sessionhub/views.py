"""The shapes of what SessionHub's operations return, so callers get concrete types.

They are plain dicts at run time (the HTTP service sends them as they are); the ``TypedDict``
declarations let strict mypy check every key a caller reads.
"""

from __future__ import annotations

from typing import TypeAlias, TypedDict

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None
"""Any value JSON can carry: message bodies, settings, session data."""

Settings = dict[str, JSON]
"""A user's settings document (the known keys over their defaults, and ``custom``)."""


MessageView = TypedDict(
    "MessageView",
    # "from" is a keyword, hence the functional form.
    {"id": str, "from": str | None, "kind": str, "sent_at": str, "body": JSON, "read": bool},
)
"""One inbox message."""


class MessagePage(TypedDict):
    """A page of messages, oldest first; ``next_cursor`` continues after it."""

    messages: list[MessageView]
    next_cursor: str | None


class ReadMark(TypedDict):
    """Every message up to ``read_up_to`` is read."""

    read_up_to: str


class Broadcast(TypedDict):
    """How many online users a broadcast reached."""

    recipients: int


class OnlineCount(TypedDict):
    """Users active within the presence window."""

    online_users: int
    window_seconds: int
    mode: str


class OnlineUser(TypedDict):
    """One online user and when they were last active."""

    user_id: str
    last_seen_at: str


class OnlineUsersPage(TypedDict):
    """A page of online users, least recently active first."""

    users: list[OnlineUser]
    next_cursor: str | None
    mode: str


class PresenceStatus(TypedDict):
    """Whether one user is online, and when they were last seen (``None``: never)."""

    user_id: str
    online: bool
    last_seen_at: str | None
    mode: str


class DailyUsers(TypedDict):
    """Unique active users on one UTC day."""

    date: str
    active_users: int
    mode: str


class SessionStats(TypedDict):
    """Session counts and where sessions are stored now."""

    total_sessions: int
    redis_available: bool
    mode: str
    redis_sessions: int | None
    memory_sessions: int


class RedisHealth(TypedDict):
    """Redis health for load balancers: ``status`` is ``healthy``, ``degraded`` or
    ``misconfigured``."""

    status: str
    message: str
    session_count: int
    latency_ms: float | None
    mode: str
    last_error: str | None


class ActivityMinute(TypedDict):
    """One minute of the dashboard's chart: logins in it and the session count sampled in it."""

    minute: str
    logins: int
    sessions: int | None


class MemoryStoreSize(TypedDict):
    """Sessions held by this process's memory store (mirror and outage copies) and its cap."""

    sessions: int
    max_sessions: int


class RedisMemory(TypedDict):
    """Redis's own memory figures (``INFO memory``); ``max_bytes`` 0 means no limit."""

    used_bytes: int
    peak_bytes: int
    max_bytes: int
    used_human: str


class Overview(TypedDict):
    """Everything the admin dashboard and ``sessionhub top`` show."""

    generated_at: str
    health: RedisHealth
    degraded_since: str | None
    stats: SessionStats
    online: OnlineCount
    memory_store: MemoryStoreSize
    redis_memory: RedisMemory | None
    activity: list[ActivityMinute]
