"""Each user's index of live sessions, for "my devices" lists, "log out everywhere" and limits.

Redis: ``P{u:<user>}:sessions`` is a zset ``storage_id -> absolute expiry (s, rounded up)``: the
score only serves pruning, and seconds keep each entry a small listpack integer. The session hashes
live in other slots, so the index is maintained by separate calls on login and logout (never on
the per-request path) and is *pruned on every read and write*: members past their absolute
expiry go by score, and members whose session hash no longer exists (idle expiry, logout on
another instance, revocation) go after the pipelined ``HGETALL`` and ``PEXPIRETIME`` (the idle
expiry) that list them. An expired or
destroyed session therefore never shows up, and the set never outgrows the live sessions plus
those that died since the last read. The key itself expires with the newest session.

Degraded mode: the index is mirrored in memory for the sessions this process has seen; while
Redis is down, listing and revoking use that mirror (so they see this instance's sessions that
memory may serve), and additions are queued and written to Redis by the recovery hook before
traffic returns to Redis. So are the entries of sessions that recovery wrote back because Redis
had lost them (a restart without persistence): whatever is served is listed and revocable.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from .session import F_ABSOLUTE_EXPIRES, F_EXPIRES, F_USER, Fields, SessionRecord
from .stores.base import CommandCall, LuaScript, Op, PipelineCall, ScriptCall, send
from .stores.resilient import USE_MEMORY, ResilientCore
from .stores.userkeys import UserKeys
from .timefmt import iso
from .tokens import TokenCodec
from .valuecodec import PLAIN, ValueCodec

USER_ADD = LuaScript.load("user_add")
FLUSH_BATCH = 1000
"""Index entries per call when recovery writes what an outage queued (two arguments each)."""


def session_times(r: SessionRecord) -> dict[str, str]:
    """When a session began, was last used and expires when idle, as every view shows them."""
    return {
        "created_at": iso(r.created_ms),
        "last_seen_at": iso(r.last_seen_ms),
        "expires_at": iso(r.expires_ms),
    }


@dataclass(frozen=True)
class SessionInfo:
    """One live session of a user, as lists show it. ``handle`` is opaque, never the token."""

    storage_id: str
    handle: str
    record: SessionRecord

    def view(self, current_storage_id: str | None = None) -> dict[str, Any]:
        r = self.record
        return {
            "id": self.handle,
            **session_times(r),
            "user_agent": r.user_agent,
            "ip": r.ip,
            "remember": r.remember,
            "authenticated_at": iso(r.authenticated_ms) if r.authenticated_ms else None,
            "current": self.storage_id == current_storage_id,
        }


class UserSessionIndex:
    """The per-user session index over a :class:`ResilientCore` (I/O-free operations)."""

    def __init__(
        self, core: ResilientCore, codec: TokenCodec, keys: UserKeys, values: ValueCodec = PLAIN
    ) -> None:
        self.core = core
        self.codec = codec
        self.keys = keys
        self.values = values
        self._lock = threading.Lock()
        self._mirror: dict[str, dict[str, int]] = {}  # user -> storage_id -> hard expiry
        self._pending: dict[str, dict[str, int]] = {}  # additions Redis has not seen yet
        core.recovery_hooks.append(self.flush)
        core.restore_hooks.append(self._restored)

    def _remember(self, user_id: str, storage_id: str, absolute_expires_ms: int) -> None:
        with self._lock:
            self._mirror.setdefault(user_id, {})[storage_id] = absolute_expires_ms

    def _restored(self, storage_id: str, fields: Fields) -> None:
        # Redis may have come back empty: its copy of the index went with the session.
        user_id = fields.get(F_USER)
        if user_id is not None:
            absolute_expires_ms = int(fields[F_ABSOLUTE_EXPIRES])
            self._remember(user_id, storage_id, absolute_expires_ms)
            self.queue(user_id, storage_id, absolute_expires_ms)

    def _forget(self, user_id: str, storage_id: str) -> None:
        with self._lock:
            for table in (self._mirror, self._pending):
                entries = table.get(user_id)
                if entries is not None:
                    entries.pop(storage_id, None)
                    if not entries:
                        del table[user_id]

    def add_call(self, user_id: str, storage_id: str, absolute_expires_ms: int) -> ScriptCall:
        """Remember a new session of ``user_id``; returns the call that adds it to Redis's
        index, which the manager sends in the session's own create round trip."""
        self._remember(user_id, storage_id, absolute_expires_ms)
        return self._add_call(user_id, {storage_id: absolute_expires_ms}, self.core.clock())

    def add(self, user_id: str, storage_id: str, absolute_expires_ms: int) -> Op[None]:
        """Index a session bound to ``user_id`` after it was created (queued while degraded)."""
        sent = yield from self.core.on_redis(
            send(self.add_call(user_id, storage_id, absolute_expires_ms))
        )
        if sent is USE_MEMORY:
            self.queue(user_id, storage_id, absolute_expires_ms)

    def queue(self, user_id: str, storage_id: str, absolute_expires_ms: int) -> None:
        """Hold the entry for the recovery hook: its session was created in memory."""
        if self.core.has_redis:
            with self._lock:
                self._pending.setdefault(user_id, {})[storage_id] = absolute_expires_ms

    def _add_call(self, user_id: str, entries: dict[str, int], now_ms: int) -> ScriptCall:
        # Hard expiries only grow (now + absolute lifetime), so the newest is the max.
        args: list[str | int] = [now_ms // 1000, max(entries.values())]
        for storage_id, hard in entries.items():
            args += [-(-hard // 1000), storage_id]
        return ScriptCall(USER_ADD, (self.keys.sessions(user_id),), tuple(args))

    def remove_call(self, user_id: str, storage_id: str) -> CommandCall:
        """Forget ``storage_id``; returns the call that drops it from Redis's index."""
        self._forget(user_id, storage_id)
        return CommandCall(("ZREM", self.keys.sessions(user_id), storage_id))

    def remove(self, user_id: str, storage_id: str) -> Op[None]:
        """Drop ``storage_id`` from the index (called by the manager on destroy)."""
        # Not queued while degraded: the read-time pruning removes it after recovery.
        yield from self.core.on_redis(send(self.remove_call(user_id, storage_id)))

    def live(self, user_id: str) -> Op[list[SessionInfo]]:
        """The user's live sessions, oldest first; prunes whatever is dead."""
        now = self.core.clock()
        found = yield from self.core.on_redis(self._list_redis(user_id, now))
        return self._list_memory(user_id, now) if found is USE_MEMORY else found

    def _list_redis(self, user_id: str, now: int) -> Op[list[SessionInfo]]:
        assert self.core.redis_ops is not None
        key = self.keys.sessions(user_id)
        entries = _scored((yield CommandCall(("ZRANGE", key, 0, -1, "WITHSCORES"))))
        # Past its absolute expiry (the score, in seconds) a session is gone: no need to look.
        dead = [storage_id for storage_id, score in entries if score < now // 1000]
        storage_ids = [storage_id for storage_id, score in entries if score >= now // 1000]
        # Sessions this process knows for the user but the index lacks (Redis evicted or lost
        # the index key): looked up too and indexed again, so whatever is served is listed.
        indexed = {storage_id for storage_id, _ in entries}
        with self._lock:
            missing = [
                storage_id
                for storage_id in self._mirror.get(user_id, {})
                if storage_id not in indexed
            ]
        storage_ids += missing
        session_keys = self.core.redis_ops.keys
        calls: list[CommandCall] = []
        for storage_id in storage_ids:
            hash_key = session_keys.session(storage_id)
            calls += (CommandCall(("HGETALL", hash_key)), CommandCall(("PEXPIRETIME", hash_key)))
        replies = (yield PipelineCall(tuple(calls))) if calls else []
        found: list[SessionInfo] = []
        foreign: set[str] = set()
        for storage_id, reply, expires in zip(
            storage_ids, replies[::2], replies[1::2], strict=True
        ):
            fields = _as_dict(reply)
            record = None
            if fields:
                stored = {**fields, F_EXPIRES: str(expires)}
                record = SessionRecord.from_fields(storage_id, stored, self.values)
            if record is None or record.expires_ms <= now:
                dead.append(storage_id)
            elif record.user_id != user_id:  # not this user's: drop the entry, nothing expired
                dead.append(storage_id)
                foreign.add(storage_id)
            else:
                self._remember(user_id, storage_id, record.absolute_expires_ms)
                found.append(SessionInfo(storage_id, self.codec.handle(storage_id), record))
        lost = {
            info.storage_id: info.record.absolute_expires_ms
            for info in found
            if info.storage_id in missing
        }
        if lost:
            yield self._add_call(user_id, lost, now)
        for storage_id in dead:
            if storage_id not in indexed:
                self._forget(user_id, storage_id)  # gone, and no index entry to prune either
        dead = [storage_id for storage_id in dead if storage_id in indexed]
        if dead:
            yield from self._prune(user_id, dead, foreign)
        return _oldest_first(found)

    def _prune(self, user_id: str, dead: list[str], foreign: set[str]) -> Op[None]:
        """Take dead sessions out of the index; emit ``expired`` for those that expired.

        A session destroyed without its index entry (its user unknown to the destroying
        process) left a tombstone, and its ``destroyed`` event went out already. Only the process
        whose ``ZREM`` removed an entry reports it, so one expiry is one event however many
        processes read the index at once.
        """
        assert self.core.redis_ops is not None
        key = self.keys.sessions(user_id)
        session_keys = self.core.redis_ops.keys
        calls: list[CommandCall] = []
        for storage_id in dead:
            self._forget(user_id, storage_id)
            tombstone = session_keys.session_counts_and_tombstone(storage_id)[2]
            calls += (CommandCall(("ZREM", key, storage_id)), CommandCall(("EXISTS", tombstone)))
        replies = yield PipelineCall(tuple(calls))
        if self.core.events.keyspace:  # Redis reports expiries itself
            return
        for storage_id, removed, destroyed in zip(dead, replies[::2], replies[1::2], strict=True):
            if removed and not destroyed and storage_id not in foreign:
                self.core.events.emit("expired", storage_id, user_id=user_id)

    def _list_memory(self, user_id: str, now: int) -> list[SessionInfo]:
        with self._lock:
            storage_ids = list(self._mirror.get(user_id, {}))
        found: list[SessionInfo] = []
        for storage_id in storage_ids:
            fields = self.core.mirrored(storage_id, now)
            if fields is None:
                self._forget(user_id, storage_id)
                continue
            record = SessionRecord.from_fields(storage_id, fields, self.values)
            if record.user_id == user_id:
                found.append(SessionInfo(storage_id, self.codec.handle(storage_id), record))
        return _oldest_first(found)

    def flush(self) -> Op[bool]:
        """Recovery hook: write the additions queued while Redis was down."""
        with self._lock:
            pending = {u: dict(e) for u, e in self._pending.items()}
        now = self.core.clock()
        for user_id, entries in pending.items():
            live = [(s, h) for s, h in entries.items() if h > now]
            # One call per batch: Lua's unpack() refuses a few thousand arguments, and a user
            # can well have made that many sessions during an outage (a script, a crawler).
            for start in range(0, len(live), FLUSH_BATCH):
                yield self._add_call(user_id, dict(live[start : start + FLUSH_BATCH]), now)
            with self._lock:
                left = self._pending.get(user_id, {})
                for storage_id in entries:
                    left.pop(storage_id, None)
                if not left:
                    self._pending.pop(user_id, None)
        return True


def _as_dict(reply: Any) -> dict[str, str]:
    if isinstance(reply, dict):
        return reply
    it = iter(reply or ())
    return dict(zip(it, it, strict=False))


def _scored(reply: Any) -> list[tuple[str, float]]:
    """``ZRANGE ... WITHSCORES`` as pairs, whether the client paired them or not."""
    items = list(reply or ())
    if items and isinstance(items[0], list | tuple):
        return [(str(m), float(s)) for m, s in items]
    it = iter(items)
    return [(str(m), float(s)) for m, s in zip(it, it, strict=False)]


def _oldest_first(found: list[SessionInfo]) -> list[SessionInfo]:
    return sorted(found, key=lambda i: (i.record.created_ms, i.storage_id))
