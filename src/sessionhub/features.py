"""The per-user features on top of sessions, and the facades that run them sync or asyncio.

Each feature is a class of I/O-free operations (see :mod:`sessionhub.stores.base`). The hubs
expose each one through a facade: ``hub.preferences.get("alice")`` on :class:`SessionHub`,
``await hub.preferences.get("alice")`` on :class:`AsyncSessionHub`; the operation is the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .config import Settings
from .inbox import InboxOps
from .manager import SessionManager
from .preferences import PreferencesOps
from .presence import PresenceOps
from .stores.base import Op
from .throttle import LoginThrottle
from .usersessions import SessionInfo


class UserSessionsOps:
    """A user's sessions: ``list``, ``revoke`` (by public handle) and ``revoke_all``."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager

    def list(self, user_id: str) -> Op[list[SessionInfo]]:
        """Live sessions of ``user_id``, oldest first."""
        return self.manager.user_sessions_list(user_id)

    def revoke(self, user_id: str, handle: str) -> Op[bool]:
        """Destroy one session of ``user_id`` by its public handle."""
        return self.manager.revoke_user_session(user_id, handle)

    def revoke_all(self, user_id: str, *, keep_sid: str | None = None) -> Op[int]:
        """Destroy every session of ``user_id`` except ``keep_sid``."""
        return self.manager.revoke_user_sessions(user_id, keep_sid=keep_sid)


@dataclass
class Features:
    """The operation objects of every per-user feature of one hub."""

    user_sessions: UserSessionsOps
    preferences: PreferencesOps
    presence: PresenceOps
    inbox: InboxOps
    login_throttle: LoginThrottle


def build_features(settings: Settings, manager: SessionManager) -> Features:
    """The features the settings describe, on the manager's core and key layout."""
    ps = settings.preferences
    pr = settings.presence
    ms = settings.messages
    presence = PresenceOps(
        manager.core,
        manager.user_keys,
        window_s=pr.window,
        throttle_s=pr.throttle,
        daily_retention_days=pr.daily_retention_days,
    )
    inbox = InboxOps(
        manager.core,
        manager.user_keys,
        max_per_user=ms.max_per_user,
        retention_s=ms.retention,
        max_body_bytes=ms.max_body_bytes,
        send_rate=ms.send_rate,
        send_rate_window_s=ms.send_rate_window,
        online_window_s=pr.window,
    )
    inbox.online_here = presence.local_online
    return Features(
        user_sessions=UserSessionsOps(manager),
        preferences=PreferencesOps(
            manager.core,
            manager.user_keys,
            max_custom_bytes=ps.max_custom_bytes,
            max_custom_keys=ps.max_custom_keys,
        ),
        presence=presence,
        inbox=inbox,
        login_throttle=LoginThrottle(
            manager.core,
            manager.user_keys,
            max_attempts=settings.auth.max_attempts,
            lockout_s=settings.auth.lockout_seconds,
            max_attempts_per_ip=settings.auth.max_attempts_per_ip,
        ),
    )


class SyncFacade:
    """Calls an operation object's methods and runs the operations they return, blocking."""

    def __init__(self, ops: object, run: Callable[[Op[Any]], Any]) -> None:
        self._ops = ops
        self._run = run

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._ops, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._run(method(*args, **kwargs))

        call.__doc__ = method.__doc__
        setattr(self, name, call)  # found directly from now on, without __getattr__
        return call


class AsyncFacade:
    """Calls an operation object's methods and runs the operations they return, awaitable."""

    def __init__(self, ops: object, run: Callable[[Op[Any]], Awaitable[Any]]) -> None:
        self._ops = ops
        self._run = run

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._ops, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._run(method(*args, **kwargs))

        call.__doc__ = method.__doc__
        setattr(self, name, call)  # found directly from now on, without __getattr__
        return call
