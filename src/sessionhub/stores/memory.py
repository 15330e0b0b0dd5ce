"""The in-process session store: the fallback while Redis is away, or the only store.

Safe under threads (one lock) and under asyncio (no method awaits). Expiry is checked on every
read, a sweeper removes what expired, and a cap evicts the least recently used session so a long
outage cannot exhaust memory.

While Redis is healthy the same store is the read cache (:meth:`MemoryStore.cached`): a copy is
served only while the subscription that vouched for it is up, and only the ``cache_size`` most
recently read copies are. Fields are replaced, never changed in place, so a cached dict can be
handed out without copying it, and the record parsed from it is kept with it
(:class:`~sessionhub.session.StoredFields`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ..session import (
    F_ABSOLUTE_EXPIRES,
    F_EXPIRES,
    F_IDLE,
    F_LAST_SEEN,
    Fields,
    StoredFields,
    slid_expiry,
)
from .coherence import UNCONFIRMED

DEFAULT_MAX_SESSIONS = 100_000


@dataclass
class _Entry:
    fields: StoredFields
    expires_ms: int
    confirmed: int  # link epoch in which Redis last returned it (see .coherence)
    link: int = UNCONFIRMED  # the subscription that was up then: the cache serves it while it is


class MemoryStore:
    """Sessions in a dict, with the same semantics as the Redis scripts."""

    def __init__(self, max_sessions: int = DEFAULT_MAX_SESSIONS, cache_size: int = 0) -> None:
        self.max_sessions = max_sessions
        self.cache_size = min(cache_size, max_sessions)
        self.evictions = 0
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # The copies the cache may serve, most recently read last; not needed (None) when the
        # cache may serve every copy the store holds.
        self._hot: OrderedDict[str, None] | None = (
            OrderedDict() if 0 < cache_size < max_sessions else None
        )
        self._lock = threading.Lock()

    def load(
        self,
        storage_id: str,
        now_ms: int,
        idle_ms: int,
        *,
        touch: bool = True,
        threshold_ms: int = 0,
    ) -> Fields | None:
        with self._lock:
            entry = self._entries.get(storage_id)
            if entry is None or entry.expires_ms <= now_ms:
                return None  # an expired one stays for the sweep, which reports it
            self._entries.move_to_end(storage_id)
            fields = entry.fields
            if touch and now_ms - int(fields.get(F_LAST_SEEN, 0)) >= threshold_ms:
                own_idle = int(fields.get(F_IDLE, idle_ms))  # a remembered session's, as load.lua
                entry.expires_ms = slid_expiry(now_ms, own_idle, int(fields[F_ABSOLUTE_EXPIRES]))
                slid = {F_EXPIRES: str(entry.expires_ms), F_LAST_SEEN: str(now_ms)}
                entry.fields = StoredFields({**fields, **slid})  # cached() hands the old one out
            return dict(entry.fields)

    def cached(
        self, storage_id: str, now_ms: int, link: int, fresh_ms: int | None
    ) -> Fields | None:
        """The copy to serve without Redis, or ``None``; the caller must not change it.

        Served only when the subscription ``link`` vouched for it, it has not expired and, with
        ``fresh_ms``, it was slid less than that long ago (else the read must slide it in Redis).
        """
        entry = self._entries.get(storage_id)
        if entry is None or entry.link != link or link < 0 or entry.expires_ms <= now_ms:
            return None
        fields = entry.fields
        if fresh_ms is not None and now_ms - int(fields.get(F_LAST_SEEN, 0)) >= fresh_ms:
            return None
        hot = self._hot
        with self._lock:
            if hot is not None:
                if storage_id not in hot:
                    return None
                hot.move_to_end(storage_id)
            if storage_id in self._entries:
                self._entries.move_to_end(storage_id)
        return fields

    def peek(self, storage_id: str, now_ms: int) -> Fields | None:
        """The live record without touching it or its recency."""
        with self._lock:
            entry = self._entries.get(storage_id)
            if entry is None or entry.expires_ms <= now_ms:
                return None
            return dict(entry.fields)

    def confirmed(self, storage_id: str) -> int:
        """The link epoch recorded with ``storage_id`` (``UNCONFIRMED`` when absent)."""
        entry = self._entries.get(storage_id)
        return UNCONFIRMED if entry is None else entry.confirmed

    def put(
        self,
        storage_id: str,
        fields: Fields,
        expires_ms: int,
        confirmed: int = UNCONFIRMED,
        link: int = UNCONFIRMED,
    ) -> None:
        with self._lock:
            self._entries[storage_id] = _Entry(StoredFields(fields), expires_ms, confirmed, link)
            self._entries.move_to_end(storage_id)
            while len(self._entries) > self.max_sessions:
                gone, _ = self._entries.popitem(last=False)
                self.evictions += 1
                if self._hot is not None:
                    self._hot.pop(gone, None)
            hot = self._hot
            if hot is not None and link >= 0:
                hot[storage_id] = None
                hot.move_to_end(storage_id)
                if len(hot) > self.cache_size:
                    hot.popitem(last=False)

    def update(
        self,
        storage_id: str,
        set_fields: Fields,
        delete: tuple[str, ...],
        now_ms: int,
        expires_ms: int | None = None,
    ) -> bool:
        with self._lock:
            entry = self._entries.get(storage_id)
            if entry is None or entry.expires_ms <= now_ms:
                return False
            if expires_ms is not None:
                entry.expires_ms = expires_ms
                set_fields = {**set_fields, F_EXPIRES: str(expires_ms)}
            entry.fields = entry.fields.replaced(set_fields, delete)
            return True

    def modify(
        self, storage_id: str, name: str, change: Callable[[str | None], str], now_ms: int
    ) -> str | None:
        """Replace field ``name`` by ``change`` of its value, atomically; ``None`` when the
        session is gone."""
        with self._lock:
            entry = self._entries.get(storage_id)
            if entry is None or entry.expires_ms <= now_ms:
                return None
            value = change(entry.fields.get(name))
            entry.fields = StoredFields({**entry.fields, name: value})
            return value

    def destroy(self, storage_id: str) -> bool:
        with self._lock:
            if self._hot is not None:
                self._hot.pop(storage_id, None)
            return self._entries.pop(storage_id, None) is not None

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
            dead: list[tuple[str, Fields]] = [
                (storage_id, e.fields)
                for storage_id, e in self._entries.items()
                if e.expires_ms <= now_ms
            ]
            for storage_id, _ in dead:
                del self._entries[storage_id]
                if self._hot is not None:
                    self._hot.pop(storage_id, None)
            return dead
