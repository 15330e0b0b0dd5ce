"""The Redis side of the session store: key layout and one-round-trip operations.

Key layout (``P`` is ``SESSION.KEY_PREFIX``, ``n`` the index shard of the session)::

    P{n}:s:<storage_id>   hash   one session (fields: see sessionhub.session but ``e``, which is the
                          key's own expiry time: PEXPIREAT to set it, PEXPIRETIME to read it)
    P{n}:cnt       hash   bucket end (ms) -> sessions of shard n whose idle expiry ends in it
    P{n}:x:<storage_id>   string set for a minute by the process that reports the session's expiry
    P{n}:k:<storage_id>   string a session's lock (``hub.lock``): the holder's token, until its ttl
    Prevoked       Pub/Sub channel: the storage id of every session destroyed (destroy.lua),
                   and ``<storage_id>:<writer>`` for every data write (update.lua, modify.lua)

A session and its shard's counts share the hash tag ``{n}``, so every script touches one slot and
the same layout runs on Redis Cluster. Counting sums the buckets that have not ended over the
shards: never KEYS or SCAN, and no index entry per session. The price is that a session which idled
out is counted until its bucket ends, at most ``count_bucket_ms`` late.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import (
    AuthenticationError,
    ClusterDownError,
    ClusterError,
    MasterDownError,
    NoPermissionError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)

from ..exceptions import ConflictError, DataError, RedisConfigError, RedisTooOldError
from ..session import F_EXPIRES, F_IDLE, NOT_A_LIST, NOT_A_NUMBER, Fields
from ..tokens import short
from .base import Arg, CommandCall, FieldChange, LuaScript, Op, PipelineCall, ScriptCall

log = logging.getLogger("sessionhub.store")

REDIS_DOWN: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    ConnectionError,
    TimeoutError,
    # A failover in progress: a demoted master (READONLY), a cluster without a master for a
    # slot (CLUSTERDOWN, MASTERDOWN), a slot in the middle of a move (TRYAGAIN), or no node of
    # the cluster reachable. Each passes once the new master is there; until then, memory.
    ReadOnlyError,
    ClusterDownError,
    TryAgainError,
    ClusterError,
    RedisClusterException,
)
"""Errors that mean "Redis is not there" (rather than "Redis refused this command")."""


@dataclass(frozen=True)
class Fault:
    """Why Redis cannot serve now, named as the log, ``last_error`` and health say it."""

    name: str
    message: str
    reads_work: bool = False
    """Redis still answers reads and refuses only writes: sessions are read from it while what
    changes is kept in memory, so a session this process never saw is not logged out."""
    config: bool = False
    """A mistake in the configuration (credentials, permissions, TLS, master name): waiting does
    not fix it, so starting the service refuses it and health names it instead of an outage."""


UNREACHABLE = Fault("unreachable", "Redis is unreachable")
TIMED_OUT = Fault("timed out", "Redis did not answer within REDIS.SOCKET_TIMEOUT")
LOADING = Fault("loading", "Redis is loading its dataset")
MAXCLIENTS = Fault(
    "max clients", "Redis refuses new connections (maxclients reached; raise maxclients)"
)
READ_ONLY = Fault(
    "read-only replica",
    "Redis is a read-only replica (point REDIS.URL at the master, or REPLICAOF NO ONE)",
    reads_work=True,
)
OUT_OF_MEMORY = Fault(
    "out of memory",
    "Redis is out of memory (maxmemory reached, noeviction; raise maxmemory or use an "
    "allkeys-lru policy)",
    reads_work=True,
)
CANNOT_PERSIST = Fault(
    "cannot persist",
    "Redis refuses writes because its last RDB save failed (MISCONF: stop-writes-on-bgsave-error; "
    "fix the disk or its dir, or turn that setting off)",
    reads_work=True,
)
BUSY = Fault(
    "busy",
    "Redis is busy running a script or function that does not end (BUSY; SCRIPT KILL or "
    "FUNCTION KILL stops it)",
)
CLUSTER_DOWN = Fault(
    "cluster down",
    "Redis Cluster cannot serve a slot (CLUSTERDOWN: a master lost and no replica promoted yet, "
    "or a slot no master serves)",
)
SLOT_MOVING = Fault(
    "slot moving", "Redis Cluster kept answering TRYAGAIN for a slot being moved (a reshard)"
)
MASTER_DOWN = Fault("master down", "Redis is a replica that lost its master (MASTERDOWN)")
NO_SCRIPT = Fault("scripts refused", "Redis refused SessionHub's scripts even by EVAL (NOSCRIPT)")
TOO_OLD = Fault("too old", "Redis is too old for SessionHub (7.0 or newer needed)")
UNCLASSIFIED = Fault(
    "unclassified",
    "the probe of Redis failed with an error SessionHub does not classify (the error follows; "
    "the probe keeps trying)",
)
"""What the probe reports for an error :func:`classify` has no fault for, so that health names
the error the latest probe met, not the fault before it."""
WRONG_CREDENTIALS = Fault(
    "wrong credentials",
    "Redis refused the credentials (wrong or missing REDIS.USERNAME / REDIS.PASSWORD, or "
    "SENTINEL_USERNAME / SENTINEL_PASSWORD)",
    config=True,
)
NO_PERMISSION = Fault(
    "missing permission",
    "Redis's ACL refuses a command or key SessionHub needs (NOPERM; the user's rules are in "
    "docs/DEPLOYMENT.md)",
    config=True,
)
TLS_FAILED = Fault(
    "TLS handshake failed",
    "the TLS handshake with Redis failed (check REDIS.TLS_CA_CERT, the server's certificate and "
    "host name, TLS_CERT / TLS_KEY)",
    config=True,
)
UNKNOWN_MASTER = Fault(
    "unknown master",
    "no sentinel knows the master REDIS.SENTINEL_MASTER names",
    config=True,
)


class UnknownMasterError(redis.ConnectionError):
    """Every sentinel answered and none monitors the master asked for: a wrong
    ``SENTINEL_MASTER``, not a master that is down."""


_REFUSALS: tuple[tuple[type[Exception] | None, str, Fault], ...] = (
    # redis-py names most refusals by their error code; a script relays the code of the call
    # that failed in it, which the prefix check catches whatever class redis-py picked.
    (redis.ReadOnlyError, "READONLY", READ_ONLY),
    (redis.OutOfMemoryError, "OOM", OUT_OF_MEMORY),
    (MasterDownError, "MASTERDOWN", MASTER_DOWN),
    # Error replies to redis-py, but outages to users: a failover or reshard under way.
    (ClusterDownError, "CLUSTERDOWN", CLUSTER_DOWN),
    (TryAgainError, "TRYAGAIN", SLOT_MOVING),
    # Codes redis-py has no class for: its ResponseError keeps them at the start of the text.
    (None, "MISCONF", CANNOT_PERSIST),
    (None, "BUSY ", BUSY),  # the space sets it apart from BUSYKEY (RESTORE onto a key)
    (NoScriptError, "NOSCRIPT", NO_SCRIPT),
)


_SCRIPT_NOPERM = "user executing the script can't run this command"
"""What Redis 7.0 says when a script calls a command the ACL refuses (no NOPERM code)."""

_TLS_TRANSPORT_ERRORS = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)
"""TLS errors of a connection that was cut, not of a handshake that was refused."""


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it was raised from: redis-py wraps the error that matters (a TLS
    failure in a ConnectionError, a refused node in the cluster client's own exception)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _config_fault(exc: BaseException) -> Fault | None:
    for cause in _causes(exc):
        if isinstance(cause, AuthenticationError):
            return WRONG_CREDENTIALS
        if isinstance(cause, NoPermissionError) or _SCRIPT_NOPERM in str(cause):
            return NO_PERMISSION
        if isinstance(cause, UnknownMasterError):
            return UNKNOWN_MASTER
        if isinstance(cause, ssl.SSLError) and not isinstance(cause, _TLS_TRANSPORT_ERRORS):
            return TLS_FAILED
    return None


def classify(exc: BaseException) -> Fault | None:
    """The fault ``exc`` shows, or ``None`` when it is a bug to raise (wrong type, script error).

    Configuration mistakes come first: redis-py makes a refused password a ``ConnectionError``,
    which would otherwise read as an outage. NOSCRIPT reaches here only when the driver's EVAL
    fallback did not help.
    """
    config = _config_fault(exc)
    if config is not None:
        return config
    if isinstance(exc, redis.BusyLoadingError):
        return LOADING
    if isinstance(exc, redis.ResponseError):
        text = str(exc)
        for kind, code, fault in _REFUSALS:
            if (kind is not None and isinstance(exc, kind)) or text.startswith(code):
                return fault
        return None
    if isinstance(exc, REDIS_DOWN):
        if "max number of clients reached" in str(exc):
            return MAXCLIENTS
        # redis-py's refusal of a slot map with holes: a cluster forming or missing a master.
        if isinstance(exc, RedisClusterException) and "All slots are not covered" in str(exc):
            return CLUSTER_DOWN
        return TIMED_OUT if isinstance(exc, redis.TimeoutError | TimeoutError) else UNREACHABLE
    return None


def fault_text(fault: Fault, exc: BaseException) -> str:
    """How ``last_error``, the log and health name ``exc``, a case of ``fault``."""
    return f"{fault.message}: {type(exc).__name__}: {exc}"


def refusal(text: str) -> RedisConfigError:
    """A configuration mistake, told as the one line the service refuses to start with."""
    return RedisConfigError(" ".join(text.split()))


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
MODIFY = LuaScript.load("modify")
UNLOCK = LuaScript.load("unlock")
DESTROY = LuaScript.load("destroy", "counts")
COUNT = LuaScript.load("count")

SWAP_ATTEMPTS = 3
"""Compare-and-set writes of a sealed field one :meth:`RedisOps.modify` tries in a row; each
failed one answers the field's new value, so a retry is one round trip."""

PRUNE_LIMIT = 1000
"""Ended buckets one count removes per shard: bounded work per call, however long since the last."""

COUNT_BUCKETS = 60
"""Buckets per idle timeout: a shard's live buckets stay a small listpack, and a count is late by
at most a sixtieth of the idle timeout (two minutes at the default two hours)."""

PROBE_TTL_MS = 1000
"""How long the probe's key lives: the probe only needs Redis to accept it."""

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

    def shard(self, storage_id: str) -> int:
        return int(storage_id[:8], 16) % self.shards

    def _session_in(self, shard: int, storage_id: str) -> str:
        return f"{self.prefix}{{{shard}}}:s:{storage_id}"

    def session(self, storage_id: str) -> str:
        return self._session_in(self.shard(storage_id), storage_id)

    def counts(self, shard: int) -> str:
        return f"{self.prefix}{{{shard}}}:cnt"

    def counts_of(self, storage_id: str) -> str:
        return self.counts(self.shard(storage_id))

    def probe(self) -> str:
        return f"{self.prefix}probe"

    def expiry_claim(self, storage_id: str) -> str:
        """Set by the one process that reports a session's expiry (keyspace notifications reach
        every subscriber)."""
        return f"{self.prefix}{{{self.shard(storage_id)}}}:x:{storage_id}"

    def lock(self, storage_id: str) -> str:
        """A session's lock, in the session's slot."""
        return f"{self.prefix}{{{self.shard(storage_id)}}}:k:{storage_id}"

    def revoked(self) -> str:
        """Pub/Sub channel: every destroy publishes the storage id, so mirrors drop their copy."""
        return f"{self.prefix}revoked"

    def session_and_counts(self, storage_id: str) -> tuple[str, str]:
        """The keys of a session and of its shard's counts, for the scripts that touch both."""
        shard = self.shard(storage_id)
        return self._session_in(shard, storage_id), self.counts(shard)

    def session_counts_and_tombstone(self, storage_id: str) -> tuple[str, str, str]:
        """:meth:`session_and_counts` and the key that marks the session destroyed."""
        shard = self.shard(storage_id)
        tombstone = f"{self.prefix}{{{shard}}}:t:{storage_id}"
        return self._session_in(shard, storage_id), self.counts(shard), tombstone


def _pairs(fields: Fields) -> list[str]:
    flat: list[str] = []
    for name, value in fields.items():
        flat += (name, value)
    return flat


def _stored_pairs(fields: Fields) -> list[str]:
    """The fields a session hash holds: all but the idle expiry, which the key's expiry holds."""
    return _pairs({name: value for name, value in fields.items() if name != F_EXPIRES})


def _text(reply: Any) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def _as_fields(reply: Any) -> Fields:
    it = iter(reply)
    return dict(zip(it, it, strict=False))  # pairs from one iterator


class RedisOps:
    """Operations on sessions in Redis, as I/O-free generators (see :mod:`.base`)."""

    def __init__(
        self,
        keys: KeySpace,
        count_bucket_ms: int = MIN_COUNT_BUCKET_MS,
        remember_bucket_ms: int | None = None,
        *,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 0,
    ) -> None:
        self.keys = keys
        self.bucket_ms = count_bucket_ms
        self.remember_bucket_ms = remember_bucket_ms or count_bucket_ms
        """The bucket width of remembered sessions (field ``w``), which idle out much later."""
        self.min_version = MIN_REDIS_VERSION
        self.expired = 0
        """Sessions that idled out, as :meth:`count` finds their ended buckets (each once)."""
        self.wait_replicas = wait_replicas
        """``REDIS.WAIT_REPLICAS``: creates and destroys return once this many replicas have
        them, so a failover cannot lose a login or bring a revoked session back."""
        self.wait_timeout_ms = wait_timeout_ms

    def _acknowledged(self, call: ScriptCall | PipelineCall) -> Op[list[Any]]:
        """Send ``call`` and, with ``wait_replicas``, ``WAIT`` right behind it in the same round
        trip and on the same connection (on Cluster, on each node written): the replies of
        ``call``'s calls, in order."""
        calls = call.calls if isinstance(call, PipelineCall) else (call,)
        if not self.wait_replicas:
            reply = yield call
            return list(reply) if isinstance(call, PipelineCall) else [reply]
        wait = CommandCall(("WAIT", self.wait_replicas, self.wait_timeout_ms))
        replies: list[Any] = list((yield PipelineCall((*calls, wait))))
        acked = replies.pop()
        if int(acked) < self.wait_replicas:
            log.warning(
                "%d of REDIS.WAIT_REPLICAS=%d replicas acknowledged within %d ms: a failover now "
                "could lose this write",
                int(acked),
                self.wait_replicas,
                self.wait_timeout_ms,
            )
        return replies

    def load(
        self,
        storage_id: str,
        now_ms: int,
        idle_ms: int,
        *,
        touch: bool = True,
        threshold_ms: int = 0,
    ) -> Op[Fields | None]:
        args: tuple[Arg, ...] = (now_ms, idle_ms, 1 if touch else 0, threshold_ms, self.bucket_ms)
        args += (self.remember_bucket_ms,)
        reply = yield ScriptCall(LOAD, self.keys.session_and_counts(storage_id), args)
        return None if reply is None else _as_fields(reply)

    def _put_call(self, storage_id: str, fields: Fields, expires_ms: int, mode: str) -> ScriptCall:
        width = self.remember_bucket_ms if F_IDLE in fields else self.bucket_ms
        args: tuple[Arg, ...] = (expires_ms, mode, fields.get("l", "0"), width)
        args += tuple(_stored_pairs(fields))
        return ScriptCall(PUT, self.keys.session_counts_and_tombstone(storage_id), args)

    def create(
        self,
        storage_id: str,
        fields: Fields,
        expires_ms: int,
        also: tuple[ScriptCall | CommandCall, ...] = (),
    ) -> Op[None]:
        """Write a new session; ``also`` rides in the same round trip (the user's index)."""
        put = self._put_call(storage_id, fields, expires_ms, "new")
        yield from self._acknowledged(PipelineCall((put, *also)) if also else put)

    def put_many_if_newer(
        self, records: list[tuple[str, Fields, int]], writer: str = ""
    ) -> Op[list[bool]]:
        """Copy records into Redis unless Redis holds a fresher copy (recovery after an outage).

        Says, per record, whether it was written: Redis had lost it (a restart without
        persistence, an eviction) or held an older copy.
        """
        if not records:
            return []
        replies = yield PipelineCall(
            tuple(self._put_call(storage_id, f, exp, "newer") for storage_id, f, exp in records)
        )
        written = [bool(r) for r in replies]
        # Other processes may cache what this copy replaced (it was cut off from Redis alone);
        # this one still serves its own copy from memory until the recovery ends.
        channel = self.keys.revoked()
        changed = tuple(
            CommandCall(("PUBLISH", channel, f"{storage_id}:{writer}"))
            for (storage_id, _, _), wrote in zip(records, written, strict=True)
            if wrote
        )
        if changed:
            yield PipelineCall(changed)
        return written

    def update(
        self,
        storage_id: str,
        set_fields: Fields,
        delete: tuple[str, ...],
        expires_ms: int | None = None,
        writer: str = "",
    ) -> Op[bool]:
        """Write data fields (and the application's own expiry, if given), and tell every cache
        but ``writer``'s to drop its copy."""
        expiry = "" if expires_ms is None else expires_ms
        args: tuple[Arg, ...] = (
            self.keys.revoked(),
            f"{storage_id}:{writer}",
            expiry,
            self.bucket_ms,
        )
        args += (len(delete), *delete, *_pairs(set_fields))
        reply = yield ScriptCall(UPDATE, self.keys.session_and_counts(storage_id), args)
        return bool(reply)

    def modify(
        self,
        storage_id: str,
        name: str,
        change: FieldChange,
        writer: str,
        attempts: int = SWAP_ATTEMPTS,
    ) -> Op[str | None]:
        """Field ``name`` as ``change`` left it, atomically; ``None`` when the session is gone.

        ``modify.lua`` changes a plain value in place (one round trip). A value it cannot read
        (sealed) or a result past ``change.limit`` comes back instead: ``change.apply`` changes
        it here and ``swap`` writes it only if the field still holds what was read, else
        answers what it holds now, so a retry costs one round trip. :class:`ConflictError`
        after ``attempts`` writers got in first; a front end pauses and runs the op again.
        """
        keys = (self.keys.session(storage_id),)
        channel, message = self.keys.revoked(), f"{storage_id}:{writer}"
        args: tuple[Arg, ...] = (name, change.kind, change.argument, channel, message, change.limit)
        for _ in range(attempts + 1):
            try:
                reply = yield ScriptCall(MODIFY, keys, args)
            except redis.ResponseError as exc:
                text = str(exc)
                if "session value is not" in text:
                    raise DataError(NOT_A_NUMBER if "number" in text else NOT_A_LIST) from None
                raise
            if not isinstance(reply, list):
                return None if reply is None else _text(reply)
            current = None if reply[0] is None else _text(reply[0])
            args = (name, "swap", change.apply(current), channel, message, current or "")
        raise ConflictError(
            f"field {name!r} of session {short(storage_id)} changed {attempts} times in a row "
            "between this writer's read and its write (concurrent writers); try again, or take "
            "hub.lock(session) around the change"
        )

    def lock(self, storage_id: str, token: str, ttl_ms: int) -> Op[bool]:
        """Take the session's lock unless another holder has it."""
        reply = yield CommandCall(("SET", self.keys.lock(storage_id), token, "NX", "PX", ttl_ms))
        return bool(reply)

    def unlock(self, storage_id: str, token: str) -> Op[bool]:
        """Release the lock if ``token`` still holds it."""
        return bool((yield ScriptCall(UNLOCK, (self.keys.lock(storage_id),), (token,))))

    def destroy_call(self, storage_id: str) -> ScriptCall:
        args: tuple[Arg, ...] = (
            self.bucket_ms,
            self.keys.revoked(),
            storage_id,
            self.remember_bucket_ms,
        )
        return ScriptCall(DESTROY, self.keys.session_counts_and_tombstone(storage_id), args)

    def destroy(self, storage_id: str) -> Op[bool]:
        [existed] = yield from self._acknowledged(self.destroy_call(storage_id))
        return bool(existed)

    def destroy_many(self, storage_ids: list[str]) -> Op[None]:
        if storage_ids:
            yield PipelineCall(tuple(self.destroy_call(s) for s in storage_ids))

    def count(self, now_ms: int) -> Op[int]:
        """Sessions in all shards' buckets that have not ended, dropping ended ones (bounded)."""
        calls = tuple(
            ScriptCall(COUNT, (self.keys.counts(shard),), (now_ms, PRUNE_LIMIT))
            for shard in range(self.keys.shards)
        )
        replies = yield PipelineCall(calls)
        self.expired += sum(int(r[1]) for r in replies)
        return sum(int(r[0]) for r in replies)

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

    def check_ready(self) -> Op[tuple[int, ...] | None]:
        """:meth:`check_server`, then a tiny write that proves Redis accepts writes.

        A read-only replica, a Redis out of memory or one loading its dataset still answers
        ``INFO``: the write is what keeps such a Redis from being taken back too early. A count
        of one shard that drops nothing (prune limit 0) then proves the scripts may run.
        """
        version = yield from self.check_server()
        yield CommandCall(("SET", self.keys.probe(), "1", "PX", PROBE_TTL_MS))
        # Every request runs a script: an ACL without EVALSHA must show here, at start.
        yield ScriptCall(COUNT, (self.keys.counts(0),), (0, 0))
        return version
