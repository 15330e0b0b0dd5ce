"""The figures of the admin dashboard and ``sessionhub top``: one I/O-free operation for both.

**Activity over the last hour** is kept in Redis, one hash per minute
``P{activity}:m:<minute>`` (``logins``: HINCRBY on each login; ``sessions``: the latest count
sampled in that minute), each expiring an hour and a minute after it began. Redis rather than
process memory so that every instance adds to the same figures, a restart keeps them and
``sessionhub top`` run from the config sees what the service counted. The keys share one hash tag,
so the hour is read in one pipeline on one slot. While Redis cannot take them, the same figures
are kept in this process and merged into what is shown; they are not copied back on recovery
(a chart, not a ledger).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from .manager import SessionManager
from .presence import PresenceOps
from .stores.base import CommandCall, Op, PipelineCall, send
from .stores.resilient import USE_MEMORY
from .timefmt import iso
from .views import ActivityMinute, MemoryStoreSize, Overview, RedisMemory, SessionStats

MINUTE_MS = 60_000
WINDOW_MINUTES = 60
KEEP_MS = (WINDOW_MINUTES + 1) * MINUTE_MS


class DashboardOps:
    """Per-minute activity counters and the overview built from every other figure."""

    def __init__(self, manager: SessionManager, presence: PresenceOps) -> None:
        self.manager = manager
        self.presence = presence
        self._prefix = manager.user_keys.prefix
        self._lock = threading.Lock()
        self._local: dict[int, dict[str, int]] = {}  # minute -> figures Redis did not take

    def _key(self, minute: int) -> str:
        return f"{self._prefix}{{activity}}:m:{minute}"

    def _record(self, field: str, value: int, *, add: bool) -> Op[None]:
        minute = self.manager.core.clock() // MINUTE_MS
        key = self._key(minute)
        write = ("HINCRBY" if add else "HSET", key, field, value)
        calls = (CommandCall(write), CommandCall(("PEXPIRE", key, KEEP_MS)))
        stored = yield from self.manager.core.on_redis(send(PipelineCall(calls)))
        if stored is USE_MEMORY:
            with self._lock:
                figures = self._local.setdefault(minute, {})
                figures[field] = figures.get(field, 0) + value if add else value
                for old in [m for m in self._local if m <= minute - WINDOW_MINUTES]:
                    del self._local[old]

    def record_login(self) -> Op[None]:
        """Count one login in the current minute."""
        return self._record("logins", 1, add=True)

    def record_sessions(self, total: int) -> Op[None]:
        """Note ``total`` as the current minute's session count."""
        return self._record("sessions", total, add=False)

    def sample(self) -> Op[SessionStats]:
        """Session counts now, noted as the current minute's point of the chart."""
        stats = yield from self.manager.stats()
        yield from self.record_sessions(stats["total_sessions"])
        return stats

    def activity(self) -> Op[list[ActivityMinute]]:
        """Logins and the session count of each of the last 60 minutes, oldest first."""
        now_minute = self.manager.core.clock() // MINUTE_MS
        minutes = range(now_minute - WINDOW_MINUTES + 1, now_minute + 1)
        calls = tuple(CommandCall(("HMGET", self._key(m), "logins", "sessions")) for m in minutes)
        replies = yield from self.manager.core.on_redis(send(PipelineCall(calls)))
        stored = [[None, None]] * len(minutes) if replies is USE_MEMORY else replies
        with self._lock:
            local = {m: dict(f) for m, f in self._local.items()}
        out: list[ActivityMinute] = []
        for minute, (logins, sessions) in zip(minutes, stored, strict=True):
            here = local.get(minute, {})
            count = here.get("sessions", None if sessions is None else int(sessions))
            out.append(
                {
                    "minute": iso(minute * MINUTE_MS),
                    "logins": int(logins or 0) + here.get("logins", 0),
                    "sessions": count,
                }
            )
        return out

    def redis_memory(self) -> Op[RedisMemory | None]:
        """Redis's ``INFO memory`` figures, or ``None`` when Redis does not answer."""
        reply = yield from self.manager.core.on_redis(send(CommandCall(("INFO", "memory"))))
        if reply is USE_MEMORY:
            return None
        info = _info_fields(reply)
        return {
            "used_bytes": _int(info.get("used_memory")),
            "peak_bytes": _int(info.get("used_memory_peak")),
            "max_bytes": _int(info.get("maxmemory")),
            "used_human": str(info.get("used_memory_human", "")),
        }

    def overview(self) -> Op[Overview]:
        """Everything the dashboard shows, read now; notes the session count for the chart."""
        core = self.manager.core
        health = yield from self.manager.health()
        stats = yield from self.sample()
        online = yield from self.presence.online_count()
        memory: MemoryStoreSize = {
            "sessions": len(core.memory),
            "max_sessions": core.memory.max_sessions,
        }
        since = core.degraded_since if core.degraded else None
        return {
            "generated_at": iso(int(time.time() * 1000)),
            "health": health,
            "degraded_since": None if since is None else iso(int(since * 1000)),
            "stats": stats,
            "online": online,
            "memory_store": memory,
            "redis_memory": (yield from self.redis_memory()),
            "activity": (yield from self.activity()),
        }


def _info_fields(reply: Any) -> Mapping[str, Any]:
    """``INFO``'s fields, whether redis-py parsed them into a dict or left the text."""
    if isinstance(reply, Mapping):
        return reply
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    pairs = (line.partition(":") for line in text.splitlines() if not line.startswith("#"))
    return {name: value.strip() for name, sep, value in pairs if sep}


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0
