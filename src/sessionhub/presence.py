"""Online presence: who was active within ``PRESENCE.WINDOW``, and unique users per day.

Redis keys, split over ``SESSION.INDEX_SHARDS`` shards by a hash of the user id (see
:class:`~.stores.userkeys.UserKeys`), so that no single key, and on Cluster no single master,
takes every presence write:

* ``P{n}:presence:online`` sorted set ``user -> last activity (ms)`` of shard ``n``'s users.
  ``ZADD GT`` keeps the newest time whichever instance or device wrote it, so a user is online
  while *any* of their sessions was active within the window; counting prunes older members
  (``ZREMRANGEBYSCORE``) and takes ``ZCARD`` of every shard in one pipeline: O(log N + pruned)
  per shard, never a keyspace scan.
* ``P{n}:presence:day:<YYYY-MM-DD>`` HyperLogLog of shard ``n``'s users active that day (UTC),
  kept ``PRESENCE.DAILY_RETENTION_DAYS``. A user is always in the same shard, so the shards
  count disjoint sets and the day's figure is the sum of their ``PFCOUNT`` (no ``PFMERGE``,
  which Cluster would refuse across slots); each part keeps HyperLogLog's ~0.8% error.

Writes are throttled per session in this process (one per ``PRESENCE.THROTTLE`` seconds).

Degraded mode: this process keeps its own last-seen table and daily sets. While Redis is down,
activity is recorded there and every read (counts, lists, a user's status, the day count) is
answered from it, so it covers the users active *on this instance*; responses say
``"mode": "degraded"``. On recovery the recorded activity is written to Redis (``ZADD GT`` and
``PFADD``) before traffic returns to Redis.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

from .exceptions import InvalidCursorError
from .session import F_LAST_SEEN, F_USER, Fields
from .stores.base import CommandCall, Op, PipelineCall, send
from .stores.resilient import USE_MEMORY, ResilientCore
from .stores.userkeys import UserKeys
from .timefmt import iso
from .views import DailyUsers, OnlineCount, OnlineUsersPage, PresenceStatus

DAY_MS = 86_400_000
THROTTLE_TABLE_MAX = 100_000
PAGE_SLACK = 64
"""Extra members fetched per page to step over ties at the cursor's timestamp."""


def day_of(ms: int) -> str:
    """The UTC date of a Unix time in ms, as ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


class PresenceOps:
    """Presence operations (I/O-free)."""

    def __init__(
        self,
        core: ResilientCore,
        keys: UserKeys,
        *,
        window_s: int = 300,
        throttle_s: int = 30,
        daily_retention_days: int = 90,
    ) -> None:
        self.core = core
        self.keys = keys
        self.window_ms = window_s * 1000
        self.throttle_ms = throttle_s * 1000
        self.daily_ttl_s = daily_retention_days * 86_400
        self._lock = threading.Lock()
        self._throttle: dict[str, int] = {}  # session (or user) -> last write ms
        self._local: dict[str, int] = {}  # user -> last activity seen by this process
        self._days: dict[str, set[str]] = {}  # day -> users active on this process
        self._pending: dict[str, int] = {}  # user -> last activity Redis has not seen
        self._pending_days: dict[str, set[str]] = {}
        core.recovery_hooks.append(self.flush)
        core.restore_hooks.append(self._restored)

    def _record_local(self, user_id: str, now: int, *, pending: bool) -> None:
        day = day_of(now)
        with self._lock:
            self._local[user_id] = max(self._local.get(user_id, 0), now)
            self._days.setdefault(day, set()).add(user_id)
            for stale in [d for d in self._days if d < day_of(now - 2 * DAY_MS)]:
                del self._days[stale]
            if pending:
                self._pending[user_id] = max(self._pending.get(user_id, 0), now)
                self._pending_days.setdefault(day, set()).add(user_id)

    def _restored(self, storage_id: str, fields: Fields) -> None:
        # Redis may have come back empty: a user whose session is served is active again.
        user_id = fields.get(F_USER)
        if user_id is not None:
            self._record_local(user_id, int(fields.get(F_LAST_SEEN, 0)), pending=True)

    def _should_write(self, token: str, now: int, force: bool) -> bool:
        with self._lock:
            last = self._throttle.get(token)
            if not force and last is not None and now - last < self.throttle_ms:
                return False
            if len(self._throttle) >= THROTTLE_TABLE_MAX:
                cutoff = now - self.throttle_ms
                self._throttle = {k: v for k, v in self._throttle.items() if v >= cutoff}
            self._throttle[token] = now
            return True

    def _write_calls(self, entries: dict[str, int], days: dict[str, set[str]]) -> PipelineCall:
        shard = self.keys.presence_shard
        zadd: dict[int, list[str | int]] = {}
        for user, ms in entries.items():
            zadd.setdefault(shard(user), []).extend((ms, user))
        calls = [CommandCall(("ZADD", self.keys.online(n), "GT", *m)) for n, m in zadd.items()]
        for day, users in days.items():
            by_shard: dict[int, list[str]] = {}
            for user in sorted(users):
                by_shard.setdefault(shard(user), []).append(user)
            for n, members in by_shard.items():
                key = self.keys.daily(day, n)
                calls += [
                    CommandCall(("PFADD", key, *members)),
                    CommandCall(("EXPIRE", key, self.daily_ttl_s)),
                ]
        return PipelineCall(tuple(calls))

    def touch(
        self, user_id: str, session_id: str | None = None, *, force: bool = False
    ) -> Op[bool]:
        """Record activity of ``user_id`` (throttled per session); ``True`` when written."""
        now = self.core.clock()
        if not self._should_write(session_id or f"user:{user_id}", now, force):
            return False
        written = yield from self.core.on_redis(
            send(self._write_calls({user_id: now}, {day_of(now): {user_id}}))
        )
        self._record_local(user_id, now, pending=written is USE_MEMORY and self.core.has_redis)
        return True

    def offline(self, user_id: str) -> Op[None]:
        """Forget the user's activity (their last session logged out)."""
        with self._lock:
            self._local.pop(user_id, None)
            self._pending.pop(user_id, None)
            self._throttle.pop(f"user:{user_id}", None)
        yield from self.core.on_redis(
            send(CommandCall(("ZREM", self.keys.online_of(user_id), user_id)))
        )

    def forget_session(self, session_id: str) -> None:
        """Drop a session's throttle entry (it logged out)."""
        with self._lock:
            self._throttle.pop(session_id, None)

    def online_count(self) -> Op[OnlineCount]:
        """``{"online_users": N, "window_seconds": W, "mode": ...}``."""
        now = self.core.clock()
        cutoff = now - self.window_ms
        prune = on_every_shard(self.keys, "ZREMRANGEBYSCORE", "{}", "-inf", f"({cutoff}")
        count = on_every_shard(self.keys, "ZCARD", "{}")
        replies = yield from self.core.on_redis(send(PipelineCall(prune.calls + count.calls)))
        if replies is not USE_MEMORY:
            return self._counted(sum(int(r) for r in replies[self.keys.shards :]))
        with self._lock:
            local = sum(1 for ms in self._local.values() if ms >= cutoff)
        return self._counted(local)

    def _counted(self, n: int) -> OnlineCount:
        return {
            "online_users": n,
            "window_seconds": self.window_ms // 1000,
            "mode": self.core.mode,
        }

    def online_users(self, cursor: str | None = None, limit: int = 100) -> Op[OnlineUsersPage]:
        """A page of online users, least recently active first, and the next cursor (or None).

        The cursor is ``<last seen ms>:<user id>`` of the last entry of the previous page. A user
        who is active while you page moves towards the end and may appear again on a later page.
        """
        now = self.core.clock()
        after_ms, after_user = _parse_cursor(cursor)
        start = max(after_ms, now - self.window_ms)
        # Each shard's first rows from the cursor on, merged: the page is in the first of them.
        query = ("ZRANGE", "{}", start, "+inf", "BYSCORE", "LIMIT", 0, limit + PAGE_SLACK)
        replies = yield from self.core.on_redis(
            send(on_every_shard(self.keys, *query, "WITHSCORES"))
        )
        if replies is USE_MEMORY:
            rows = self._local_rows(start)
        else:
            rows = sorted(
                (row for reply in replies for row in _score_pairs(reply)),
                key=lambda r: (r[1], r[0]),
            )
        page = [(u, ms) for u, ms in rows if (ms, u) > (after_ms, after_user)][:limit]
        nxt = f"{page[-1][1]}:{page[-1][0]}" if len(page) == limit else None
        return {
            "users": [{"user_id": u, "last_seen_at": iso(ms)} for u, ms in page],
            "next_cursor": nxt,
            "mode": self.core.mode,
        }

    def local_online(self, now: int) -> list[str]:
        """Users this process saw active within the window (degraded-mode answers)."""
        with self._lock:
            return [u for u, ms in self._local.items() if ms >= now - self.window_ms]

    def _local_rows(self, start: int) -> list[tuple[str, int]]:
        with self._lock:
            rows = [(u, ms) for u, ms in self._local.items() if ms >= start]
        return sorted(rows, key=lambda r: (r[1], r[0]))

    def status(self, user_id: str) -> Op[PresenceStatus]:
        """``{"user_id", "online", "last_seen_at"}`` (``None`` when never seen)."""
        now = self.core.clock()
        score = yield from self.core.on_redis(
            send(CommandCall(("ZSCORE", self.keys.online_of(user_id), user_id)))
        )
        last: int | None
        if score is USE_MEMORY:
            with self._lock:
                last = self._local.get(user_id)
        else:
            last = None if score is None else int(float(score))
        online = last is not None and last >= now - self.window_ms
        return {
            "user_id": user_id,
            "online": online,
            "last_seen_at": None if last is None else iso(last),
            "mode": self.core.mode,
        }

    def daily(self, day: str) -> Op[DailyUsers]:
        """Unique active users on ``day`` (YYYY-MM-DD, UTC; HyperLogLog, ~0.8% error)."""
        calls = tuple(
            CommandCall(("PFCOUNT", self.keys.daily(day, n))) for n in range(self.keys.shards)
        )
        counts = yield from self.core.on_redis(send(PipelineCall(calls)))
        if counts is USE_MEMORY:
            with self._lock:
                total = len(self._days.get(day, ()))
        else:
            total = sum(int(c) for c in counts)
        return {"date": day, "active_users": total, "mode": self.core.mode}

    def flush(self) -> Op[bool]:
        """Recovery hook: write the activity recorded while Redis was down."""
        with self._lock:
            entries, days = dict(self._pending), {d: set(u) for d, u in self._pending_days.items()}
        if entries or days:
            yield self._write_calls(entries, days)
        with self._lock:
            for user, ms in entries.items():
                if self._pending.get(user) == ms:
                    del self._pending[user]
            for day, users in days.items():
                left = self._pending_days.get(day, set()) - users
                if left:
                    self._pending_days[day] = left
                else:
                    self._pending_days.pop(day, None)
            return not self._pending and not self._pending_days


def on_every_shard(keys: UserKeys, *command: str | int) -> PipelineCall:
    """``command`` once per presence shard, ``{}`` in it standing for the shard's online key."""
    return PipelineCall(
        tuple(
            CommandCall(tuple(keys.online(n) if a == "{}" else a for a in command))
            for n in range(keys.shards)
        )
    )


def online_since(keys: UserKeys, since_ms: int) -> Op[list[str]]:
    """Every user active since ``since_ms``, from every shard."""
    replies = yield on_every_shard(keys, "ZRANGE", "{}", since_ms, "+inf", "BYSCORE")
    return [str(user) for reply in replies for user in reply]


def _parse_cursor(cursor: str | None) -> tuple[int, str]:
    if not cursor:
        return -1, ""
    ms, sep, user = cursor.partition(":")
    if not sep or not (ms.isascii() and ms.isdigit()) or len(ms) > 20:
        raise InvalidCursorError("cursor must be the next_cursor of a previous page")
    return int(ms), user


def _score_pairs(reply: Any) -> list[tuple[str, int]]:
    if reply and isinstance(reply[0], (list, tuple)):
        return [(str(m), int(float(s))) for m, s in reply]
    it = iter(reply or ())
    return [(str(m), int(float(s))) for m, s in zip(it, it, strict=False)]
