"""The in-process session store: the fallback while Redis is away, or the only store.

Safe under threads (one lock) and under asyncio (no method awaits). Expiry is checked on every
read, a sweeper removes what expired, and a cap evicts the least recently used session so a long
outage cannot exhaust memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from ..session import F_EXPIRES, F_HARD_EXPIRES, F_IDLE, F_LAST_SEEN, Fields, slid_expiry
from .coherence import UNCONFIRMED

DEFAULT_MAX_SESSIONS = 100_000


@dataclass
class _Entry:
    fields: Fields
    expires_ms: int
    confirmed: int  # link epoch in which Redis last returned it (see .coherence)


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
            if entry is None or entry.expires_ms <= now_ms:
                return None  # an expired one stays for the sweep, which reports it
            self._entries.move_to_end(sid)
            fields = entry.fields
            if touch and now_ms - int(fields.get(F_LAST_SEEN, 0)) >= threshold_ms:
                own_idle = int(fields.get(F_IDLE, idle_ms))  # a remembered session's, as load.lua
                entry.expires_ms = slid_expiry(now_ms, own_idle, int(fields[F_HARD_EXPIRES]))
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

    def confirmed(self, sid: str) -> int:
        """The link epoch recorded with ``sid`` (``UNCONFIRMED`` when absent)."""
        entry = self._entries.get(sid)
        return UNCONFIRMED if entry is None else entry.confirmed

    def put(self, sid: str, fields: Fields, expires_ms: int, confirmed: int = UNCONFIRMED) -> None:
        with self._lock:
            self._entries[sid] = _Entry(dict(fields), expires_ms, confirmed)
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
        return len(self.take_expired(now_ms))

    def take_expired(self, now_ms: int) -> list[tuple[str, Fields]]:
        """Remove every expired session; returns each one's id and fields."""
        with self._lock:
            dead = [(sid, e.fields) for sid, e in self._entries.items() if e.expires_ms <= now_ms]
            for sid, _ in dead:
                del self._entries[sid]
            return dead
