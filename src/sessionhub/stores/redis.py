"""The Redis side of the session store: key layout and one-round-trip operations.

Key layout (``P`` is ``SESSION.KEY_PREFIX``, ``n`` the index shard of the session)::

    P{n}:s:<sid>   hash   one session (fields: see sessionhub.session but ``e``, which is the
                          key's own expiry time: PEXPIREAT to set it, PEXPIRETIME to read it)
    P{n}:cnt       hash   bucket end (ms) -> sessions of shard n whose idle expiry ends in it

A session and its shard's counts share the hash tag ``{n}``, so every script touches one slot and
the same layout runs on Redis Cluster. Counting sums the buckets that have not ended over the
shards: never KEYS or SCAN, and no index entry per session. The price is that a session which idled
out is counted until its bucket ends, at most ``count_bucket_ms`` late.
"""

from __future__ import annotations

import re
from typing import Any

import redis

from ..exceptions import RedisTooOldError
from ..session import F_EXPIRES, Fields
from .base import Arg, CommandCall, LuaScript, Op, PipelineCall, ScriptCall

REDIS_DOWN: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    ConnectionError,
    TimeoutError,
)
"""Errors that mean "Redis is not there" (rather than "Redis refused this command")."""

MIN_REDIS_VERSION = (7, 0)
"""The scripts read a key's expiry time with PEXPIRETIME, new in Redis 7.0."""

_VERSION_RE = re.compile(r"^redis_version:(\d+)\.(\d+)\.?(\d*)", re.MULTILINE)


def server_version(info: Any) -> tuple[int, ...]:
    """The ``redis_version`` in ``INFO server`` (its text, or redis-py's parsed ``dict``).

    ``(0,)`` when it names none.
    """
    if isinstance(info, dict):
        info = f"redis_version:{info.get('redis_version', '')}"
    elif isinstance(info, bytes):
        info = info.decode()
    match = _VERSION_RE.search(str(info))
    if match is None:
        return (0,)
    return tuple(int(part) for part in match.groups() if part)


LOAD = LuaScript.load("load", "counts")
PUT = LuaScript.load("put", "counts")
UPDATE = LuaScript.load("update", "counts")
DESTROY = LuaScript.load("destroy", "counts")
COUNT = LuaScript.load("count")

PRUNE_LIMIT = 1000
"""Ended buckets one count removes per shard: bounded work per call, however long since the last."""

COUNT_BUCKETS = 60
"""Buckets per idle timeout: a shard's live buckets stay a small listpack, and a count is late by
at most a sixtieth of the idle timeout (two minutes at the default two hours)."""

MIN_COUNT_BUCKET_MS = 100
"""The narrowest bucket, so that very short idle timeouts do not spread over a bucket per ms."""


def count_bucket_ms(idle_ms: int) -> int:
    """The width of a count bucket for sessions that idle out after ``idle_ms``."""
    return max(MIN_COUNT_BUCKET_MS, idle_ms // COUNT_BUCKETS)


class KeySpace:
    """Names every Redis key SessionHub uses, with hash tags that keep one operation in one slot."""

    def __init__(self, prefix: str = "session:", shards: int = 16) -> None:
        self.prefix = prefix
        self.shards = shards

    def shard(self, sid: str) -> int:
        return int(sid[:8], 16) % self.shards

    def _session_in(self, shard: int, sid: str) -> str:
        return f"{self.prefix}{{{shard}}}:s:{sid}"

    def session(self, sid: str) -> str:
        return self._session_in(self.shard(sid), sid)

    def counts(self, shard: int) -> str:
        return f"{self.prefix}{{{shard}}}:cnt"

    def counts_of(self, sid: str) -> str:
        return self.counts(self.shard(sid))

    def session_and_counts(self, sid: str) -> tuple[str, str]:
        """The keys of a session and of its shard's counts, for the scripts that touch both."""
        shard = self.shard(sid)
        return self._session_in(shard, sid), self.counts(shard)


def _pairs(fields: Fields) -> list[str]:
    flat: list[str] = []
    for name, value in fields.items():
        flat += (name, value)
    return flat


def _stored_pairs(fields: Fields) -> list[str]:
    """The fields a session hash holds: all but the idle expiry, which the key's expiry holds."""
    return _pairs({name: value for name, value in fields.items() if name != F_EXPIRES})


def _as_fields(reply: Any) -> Fields:
    it = iter(reply)
    return dict(zip(it, it, strict=False))  # pairs from one iterator


class RedisOps:
    """Operations on sessions in Redis, as I/O-free generators (see :mod:`.base`)."""

    def __init__(self, keys: KeySpace, count_bucket_ms: int = MIN_COUNT_BUCKET_MS) -> None:
        self.keys = keys
        self.bucket_ms = count_bucket_ms
        self.min_version = MIN_REDIS_VERSION

    def load(
        self, sid: str, now_ms: int, idle_ms: int, *, touch: bool = True, threshold_ms: int = 0
    ) -> Op[Fields | None]:
        args: tuple[Arg, ...] = (now_ms, idle_ms, 1 if touch else 0, threshold_ms, self.bucket_ms)
        reply = yield ScriptCall(LOAD, self.keys.session_and_counts(sid), args)
        return None if reply is None else _as_fields(reply)

    def _put_call(self, sid: str, fields: Fields, expires_ms: int, mode: str) -> ScriptCall:
        args: tuple[Arg, ...] = (expires_ms, mode, fields.get("l", "0"), self.bucket_ms)
        args += tuple(_stored_pairs(fields))
        return ScriptCall(PUT, self.keys.session_and_counts(sid), args)

    def create(
        self,
        sid: str,
        fields: Fields,
        expires_ms: int,
        also: tuple[ScriptCall | CommandCall, ...] = (),
    ) -> Op[None]:
        """Write a new session; ``also`` rides in the same round trip (the user's index)."""
        put = self._put_call(sid, fields, expires_ms, "new")
        yield PipelineCall((put, *also)) if also else put

    def put_many_if_newer(self, records: list[tuple[str, Fields, int]]) -> Op[None]:
        """Copy records into Redis unless Redis holds a fresher copy (recovery after an outage)."""
        if records:
            yield PipelineCall(
                tuple(self._put_call(sid, f, exp, "newer") for sid, f, exp in records)
            )

    def update(
        self,
        sid: str,
        set_fields: Fields,
        delete: tuple[str, ...],
        expires_ms: int | None = None,
    ) -> Op[bool]:
        expiry = "" if expires_ms is None else expires_ms
        args: tuple[Arg, ...] = (expiry, self.bucket_ms, len(delete), *delete)
        args += tuple(_pairs(set_fields))
        reply = yield ScriptCall(UPDATE, self.keys.session_and_counts(sid), args)
        return bool(reply)

    def destroy_call(self, sid: str) -> ScriptCall:
        return ScriptCall(DESTROY, self.keys.session_and_counts(sid), (self.bucket_ms,))

    def destroy(self, sid: str) -> Op[bool]:
        return bool((yield self.destroy_call(sid)))

    def destroy_many(self, sids: list[str]) -> Op[None]:
        if sids:
            yield PipelineCall(tuple(self.destroy_call(s) for s in sids))

    def count(self, now_ms: int) -> Op[int]:
        """Sessions in all shards' buckets that have not ended, dropping ended ones (bounded)."""
        calls = tuple(
            ScriptCall(COUNT, (self.keys.counts(shard),), (now_ms, PRUNE_LIMIT))
            for shard in range(self.keys.shards)
        )
        replies = yield PipelineCall(calls)
        return sum(int(r) for r in replies)

    def ping(self) -> Op[bool]:
        reply = yield CommandCall(("PING",))
        return bool(reply)

    def check_server(self) -> Op[tuple[int, ...] | None]:
        """Redis's version; raises :class:`RedisTooOldError` below :attr:`min_version`.

        ``None`` when the server refuses ``INFO`` (an ACL user without it, some proxies): the
        check is skipped rather than the server refused, so such a deployment keeps working.
        """
        try:
            info = yield CommandCall(("INFO", "server"))
        except redis.ResponseError:
            return None
        version = server_version(info)
        if version < self.min_version:
            shown = ".".join(map(str, version)) if version != (0,) else "of an unknown version"
            needed = ".".join(map(str, self.min_version))
            raise RedisTooOldError(
                f"Redis {shown} is too old: SessionHub needs Redis {needed} or newer "
                "(its scripts use PEXPIRETIME); sessions stay in memory until it is upgraded"
            )
        return version
