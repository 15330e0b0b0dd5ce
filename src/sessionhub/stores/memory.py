"""The in-process session store: the fallback while Redis is away, or the only store.

Safe under threads (one lock) and under asyncio (no method awaits). Expiry is checked on every
read, a sweeper removes what expired, and a cap evicts the least recently used session so a long
outage cannot exhaust memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from ..session import F_EXPIRES, F_HARD_EXPIRES, F_LAST_SEEN, Fields, slid_expiry

DEFAULT_MAX_SESSIONS = 100_000


@dataclass
class _Entry:
    fields: Fields
    expires_ms: int


class MemoryStore:
    """Sessions in a dict, with the same semantics as the Redis scripts."""

    def __init__(self, max_sessions: int = DEFAULT_MAX_SESSIONS) -> None:
        self.max_sessions = max_sessions
        self.evictions = 0
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def load(
        self, sid: str, now_ms: int, idle_ms: int, *, touch: bool = True, threshold_ms: int = 0
    ) -> Fields | None:
        with self._lock:
            entry = self._entries.get(sid)
            if entry is None:
                return None
            if entry.expires_ms <= now_ms:
                del self._entries[sid]
                return None
            self._entries.move_to_end(sid)
            fields = entry.fields
            if touch and now_ms - int(fields.get(F_LAST_SEEN, 0)) >= threshold_ms:
                entry.expires_ms = slid_expiry(now_ms, idle_ms, int(fields[F_HARD_EXPIRES]))
                fields[F_EXPIRES] = str(entry.expires_ms)
                fields[F_LAST_SEEN] = str(now_ms)
            return dict(fields)

    def peek(self, sid: str, now_ms: int) -> Fields | None:
        """The live record without touching it or its recency."""
        with self._lock:
            entry = self._entries.get(sid)
            if entry is None or entry.expires_ms <= now_ms:
                return None
            return dict(entry.fields)

    def put(self, sid: str, fields: Fields, expires_ms: int) -> None:
        with self._lock:
            self._entries[sid] = _Entry(dict(fields), expires_ms)
            self._entries.move_to_end(sid)
            while len(self._entries) > self.max_sessions:
                self._entries.popitem(last=False)
                self.evictions += 1

    def update(
        self,
        sid: str,
        set_fields: Fields,
        delete: tuple[str, ...],
        now_ms: int,
        expires_ms: int | None = None,
    ) -> bool:
        with self._lock:
            entry = self._entries.get(sid)
            if entry is None or entry.expires_ms <= now_ms:
                return False
            for name in delete:
                entry.fields.pop(name, None)
            entry.fields.update(set_fields)
            if expires_ms is not None:
                entry.expires_ms = expires_ms
                entry.fields[F_EXPIRES] = str(expires_ms)
            return True

    def destroy(self, sid: str) -> bool:
        with self._lock:
            return self._entries.pop(sid, None) is not None

    def count(self, now_ms: int) -> int:
        with self._lock:
            return sum(1 for e in self._entries.values() if e.expires_ms > now_ms)

    def __len__(self) -> int:
        return len(self._entries)

    def sweep(self, now_ms: int) -> int:
        """Remove every expired session; returns how many went."""
        with self._lock:
            dead = [sid for sid, e in self._entries.items() if e.expires_ms <= now_ms]
            for sid in dead:
                del self._entries[sid]
            return len(dead)
