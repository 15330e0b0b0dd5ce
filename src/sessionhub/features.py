"""The per-user features on top of sessions, and their blocking and asyncio front ends.

Each feature is a class of I/O-free operations (see :mod:`sessionhub.stores.base`). The hubs
expose each one through a front end (see :mod:`sessionhub.frontends`):
``hub.preferences.get("alice")`` on :class:`~sessionhub.SessionHub`,
``await hub.preferences.get("alice")`` on :class:`~sessionhub.AsyncSessionHub`; the operation is
the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic

from .config import Settings
from .dashboard import DashboardOps
from .frontends import Front, M, operation
from .inbox import InboxOps
from .manager import SessionManager
from .preferences import PreferencesOps
from .presence import PresenceOps
from .throttle import LoginThrottle


@dataclass
class Features:
    """The operation objects of every per-user feature of one hub. A user's sessions are the
    manager's own operations."""

    manager: SessionManager
    preferences: PreferencesOps
    presence: PresenceOps
    inbox: InboxOps
    login_throttle: LoginThrottle
    dashboard: DashboardOps


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
        values=manager.values,
    )
    inbox.online_here = presence.local_online
    return Features(
        manager=manager,
        preferences=PreferencesOps(
            manager.core,
            manager.user_keys,
            max_custom_bytes=ps.max_custom_bytes,
            max_custom_keys=ps.max_custom_keys,
            values=manager.values,
        ),
        presence=presence,
        inbox=inbox,
        login_throttle=LoginThrottle(
            manager.core,
            manager.user_keys,
            manager.codec.address_id,
            max_attempts=settings.auth.max_attempts,
            lockout_s=settings.auth.lockout_seconds,
            max_attempts_per_ip=settings.auth.max_attempts_per_ip,
        ),
        dashboard=DashboardOps(manager, presence),
    )


# -- front ends: one line per operation, each keeping the operation's signature -----------------


class UserSessions(Front[SessionManager, M]):
    """A user's sessions: ``list``, ``revoke`` (by public handle) and ``revoke_all``."""

    list = operation(SessionManager.user_sessions_list)
    revoke = operation(SessionManager.revoke_user_session)
    revoke_all = operation(SessionManager.revoke_user_sessions)


class Preferences(Front[PreferencesOps, M]):
    """A user's settings."""

    get = operation(PreferencesOps.get)
    replace = operation(PreferencesOps.replace)
    patch = operation(PreferencesOps.patch)


class Presence(Front[PresenceOps, M]):
    """Online presence and daily users."""

    touch = operation(PresenceOps.touch)
    offline = operation(PresenceOps.offline)
    online_count = operation(PresenceOps.online_count)
    online_users = operation(PresenceOps.online_users)
    status = operation(PresenceOps.status)
    daily = operation(PresenceOps.daily)


class Inbox(Front[InboxOps, M]):
    """Per-user inboxes."""

    send = operation(InboxOps.send)
    broadcast = operation(InboxOps.broadcast)
    check_rate = operation(InboxOps.check_rate)
    after = operation(InboxOps.after)
    page = operation(InboxOps.page)
    mark_read = operation(InboxOps.mark_read)
    read_cursor = operation(InboxOps.read_cursor)


class LoginAttempts(Front[LoginThrottle, M]):
    """Login throttling: count an attempt before checking a password, take it back on success."""

    attempt = operation(LoginThrottle.attempt)
    succeeded = operation(LoginThrottle.succeeded)


class Dashboard(Front[DashboardOps, M]):
    """The admin dashboard's figures and its per-minute activity counters."""

    overview = operation(DashboardOps.overview)
    record_login = operation(DashboardOps.record_login)
    sample = operation(DashboardOps.sample)
    activity = operation(DashboardOps.activity)


class FeatureFronts(Generic[M]):
    """Every feature's front end in one mode: what a hub exposes as attributes."""

    def __init__(self, features: Features, mode: M) -> None:
        self.user_sessions: UserSessions[M] = UserSessions(features.manager, mode)
        self.preferences: Preferences[M] = Preferences(features.preferences, mode)
        self.presence: Presence[M] = Presence(features.presence, mode)
        self.inbox: Inbox[M] = Inbox(features.inbox, mode)
        self.login_attempts: LoginAttempts[M] = LoginAttempts(features.login_throttle, mode)
        self.dashboard: Dashboard[M] = Dashboard(features.dashboard, mode)
