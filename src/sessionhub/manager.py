"""Sessions as applications see them: cookies in, :class:`~sessionhub.session.Session` out.

Like the stores, every method here is an I/O-free operation; :mod:`sessionhub.hub` runs them
over a blocking or an asyncio Redis client.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Mapping
from typing import Protocol

from .exceptions import ConflictError, DataError, InvalidInputError
from .session import (
    DATA_PREFIX,
    F_AUTH_LEVEL,
    F_AUTHENTICATED,
    F_CREATED,
    F_EXPIRES,
    F_USER,
    Fields,
    Session,
    SessionRecord,
    appended,
    check_key,
    encoded,
    incremented,
    parsed,
)
from .stores.base import CommandCall, FieldChange, Op, ScriptCall
from .stores.redis import KeySpace
from .stores.resilient import ResilientCore
from .stores.userkeys import UserKeys
from .tokens import TokenCodec, short
from .usersessions import SessionInfo, UserSessionIndex
from .valuecodec import PLAIN, ValueCodec, session_aad
from .views import RedisHealth, SessionStats

log = logging.getLogger("sessionhub.sessions")

VERIFIED_COOKIES = 4096
"""Verified cookie -> storage id pairs each manager remembers (about 0.6 MB when full)."""

HEALTHY_MESSAGE = "Redis connection OK"
DEGRADED_HEALTH_MESSAGE = "Redis unavailable; sessions are stored in memory (degraded mode)"
MEMORY_MESSAGE = "Memory-only session store (SESSION.TYPE = memory)"


UNREADABLE = (
    "its stored value cannot be read (encrypted under a key ENCRYPTION.KEYS no longer lists, "
    "or damaged): add the key back, or store a new value there first"
)


class SessionObserver(Protocol):
    """Watches sessions begin and end (metrics); the manager itself counts nothing."""

    def created(self, session: Session) -> None:
        """A session was created (in Redis or, while degraded, in memory)."""

    def destroyed(self, storage_id: str, reason: str, created_ms: int | None) -> None:
        """A session that existed was destroyed; ``created_ms`` when this process knew it."""


class SessionManager:
    """Creates, opens, saves and destroys sessions on a :class:`ResilientCore`."""

    def __init__(
        self,
        core: ResilientCore,
        codec: TokenCodec,
        *,
        max_per_user: int = 0,
        values: ValueCodec = PLAIN,
        max_bytes: int = 0,
    ) -> None:
        self.core = core
        self.codec = codec
        self.max_per_user = max_per_user
        """``SESSION.MAX_PER_USER``: a login beyond it revokes the oldest session (0: no cap)."""
        self.values = values
        """Compression and encryption of stored values (``ENCRYPTION``, ``COMPRESS_THRESHOLD``)."""
        self.max_bytes = max_bytes
        """``SESSION.MAX_BYTES``: the most session data a save may leave, as JSON (0: no cap)."""
        keys = core.redis_ops.keys if core.redis_ops is not None else KeySpace()
        self.user_keys = UserKeys(keys.prefix, keys.shards)
        self.user_sessions = UserSessionIndex(core, codec, self.user_keys, values)
        # A browser sends the same cookie on every request: remember the storage ids of cookies
        # that verified, so a request pays a dict lookup instead of a regex and two HMACs. A
        # cookie that fails raises, and exceptions are never cached.
        self._storage_id_for_cookie = functools.lru_cache(maxsize=VERIFIED_COOKIES)(
            self._verified_storage_id
        )
        self.observer: SessionObserver | None = None

    def _where(self) -> str:
        return "Redis" if self.core.mode == "redis" else "memory"

    def storage_id_for_cookie(self, cookie: str) -> str:
        """The storage id behind a cookie; raises :class:`.InvalidTokenError`."""
        return self._storage_id_for_cookie(cookie)

    def _verified_storage_id(self, cookie: str) -> str:
        return self.codec.storage_id(self.codec.token_from_cookie(cookie))

    def open(
        self, cookie: str | None, *, touch: bool = True, force: bool = False
    ) -> Op[Session | None]:
        """The live session a cookie names, or ``None``; a forged one raises ``InvalidTokenError``.

        ``touch`` slides the idle expiry (unless refreshed within ``REFRESH_THRESHOLD``);
        ``force`` slides it regardless, in the same round trip (an explicit extend).
        """
        if not cookie:
            return None
        storage_id = self.storage_id_for_cookie(cookie)
        fields = yield from self.core.load(storage_id, touch=touch or force, force=force)
        if fields is None:
            if self.codec.has_fallbacks:
                return (yield from self._open_former(cookie, storage_id, touch=touch or force))
            return None
        if force:
            self.core.events.emit("refreshed", storage_id, user_id=fields.get(F_USER))
        return Session(SessionRecord.from_fields(storage_id, fields, self.values))

    def _open_former(self, cookie: str, storage_id: str, *, touch: bool) -> Op[Session | None]:
        """The session stored under a former secret's storage id, moved to ``storage_id`` (the
        current secret's), with the cookie to re-issue; ``None`` when there is none."""
        token = self.codec.token_from_cookie(cookie)
        for old_storage_id in self.codec.fallback_storage_ids(token):
            fields = yield from self.core.load(old_storage_id, touch=touch)
            if fields is not None:
                session = yield from self._move(old_storage_id, storage_id, fields)
                session.reissued_cookie = self.codec.cookie_value(token)
                return session
        return None

    def _move(self, old_storage_id: str, storage_id: str, fields: Fields) -> Op[Session]:
        """Store a session under a new storage id and delete the old one: one round trip when
        Redis answers (the new hash, both index changes and the old hash's destroy pipelined)."""
        record = SessionRecord.from_fields(old_storage_id, fields, self.values)
        record.load_data()  # opened under the old id; to_fields seals for the new one
        record.storage_id = storage_id
        user_id = record.user_id
        also: list[ScriptCall | CommandCall] = []
        if user_id is not None:
            also.append(
                self.user_sessions.add_call(user_id, storage_id, record.absolute_expires_ms)
            )
            also.append(self.user_sessions.remove_call(user_id, old_storage_id))
        if self.core.redis_ops is not None:
            also.append(self.core.redis_ops.destroy_call(old_storage_id))
        expires = int(fields[F_EXPIRES])
        in_redis = yield from self.core.create(storage_id, record.to_fields(), expires, tuple(also))
        if in_redis:
            self.core.memory.destroy(old_storage_id)
        else:
            yield from self.destroy(old_storage_id, user_id=user_id, reason="rekeyed")
            if user_id is not None:
                self.user_sessions.queue(user_id, storage_id, record.absolute_expires_ms)
        log.info(
            "Session moved to the current SECRET_KEY: %s -> %s",
            short(old_storage_id),
            short(storage_id),
        )
        return Session(record)

    def _check_size(self, measure: Callable[[], int]) -> None:
        # Measured only under SESSION.MAX_BYTES: the sum is per key, on every save.
        if not self.max_bytes:
            return
        data_bytes = measure()
        if data_bytes > self.max_bytes:
            raise DataError(
                f"session data is {data_bytes} bytes as JSON, more than SESSION.MAX_BYTES "
                f"({self.max_bytes}); store large values elsewhere and keep a reference"
            )

    def create(
        self,
        user_id: str | None = None,
        *,
        data: Mapping[str, object] | None = None,
        user_agent: str = "",
        ip: str = "",
        remember: bool = False,
        auth_level: str = "",
        authenticated_ms: int | None = None,
        lifetime_ms: int | None = None,
    ) -> Op[tuple[Session, str]]:
        """A new session with a fresh token; returns it and the cookie value that carries it.

        ``remember`` gives it the "remember me" lifetimes (``SESSION.REMEMBER_EXPIRES`` and
        ``REMEMBER_ABSOLUTE_LIFETIME``). A signed-in session counts as authenticated now, at
        ``auth_level``, unless ``authenticated_ms`` carries an earlier login over.
        ``lifetime_ms`` replaces the idle timeout for this session's first expiry (Django's
        ``set_expiry``); it is kept as given, even beyond the absolute lifetime or in the past.
        """
        token = self.codec.new_token()
        storage_id = self.codec.storage_id(token)
        now = self.core.clock()
        lt = self.core.lifetimes
        idle = lt.remember_idle_ms if remember else lt.idle_ms
        hard = now + (lt.remember_absolute_ms if remember else lt.absolute_ms)
        if user_id is None:
            authenticated_ms, auth_level = 0, ""
        elif authenticated_ms is None:
            authenticated_ms = now
        if lifetime_ms is None:
            expires = min(now + idle, hard)
        else:
            expires = now + lifetime_ms
            hard = max(hard, expires)
        record = SessionRecord(
            storage_id=storage_id,
            user_id=user_id,
            created_ms=now,
            last_seen_ms=now,
            expires_ms=expires,
            absolute_expires_ms=hard,
            user_agent=user_agent,
            ip=ip,
            authenticated_ms=authenticated_ms,
            auth_level=auth_level,
            idle_ms=idle if remember else 0,
            data=dict(data or {}),
            values=self.values,
        )
        if data:
            self._check_size(record.data_bytes)
        index = () if user_id is None else (self.user_sessions.add_call(user_id, storage_id, hard),)
        in_redis = yield from self.core.create(
            storage_id, record.to_fields(), record.expires_ms, index
        )
        log.info("Session created in %s: %s", self._where(), short(storage_id))
        self.core.events.emit("created", storage_id, user_id=user_id)
        if user_id is not None:
            if not in_redis:
                self.user_sessions.queue(user_id, storage_id, hard)
            if self.max_per_user:
                yield from self._enforce_limit(user_id, keep=storage_id)
        session = Session(record, new=True)
        if self.observer is not None:
            self.observer.created(session)
        return session, self.codec.cookie_value(token)

    def login(
        self,
        user_id: str,
        *,
        previous: Session | None = None,
        user_agent: str = "",
        ip: str = "",
        remember: bool = False,
        auth_level: str = "",
        lifetime_ms: int | None = None,
    ) -> Op[tuple[Session, str]]:
        """Bind a *new* token to ``user_id`` (fixation protection), carrying over prior data;
        the session counts as authenticated now, at ``auth_level``."""
        data = dict(previous) if previous is not None else None
        if previous is not None:
            yield from self.destroy(previous.storage_id, reason="login")
        return (
            yield from self.create(
                user_id,
                data=data,
                user_agent=user_agent,
                ip=ip,
                remember=remember,
                auth_level=auth_level,
                lifetime_ms=lifetime_ms,
            )
        )

    def bind_user(
        self,
        session: Session,
        user_id: str,
        *,
        auth_level: str = "",
        expires_ms: int | None = None,
    ) -> Op[bool]:
        """Bind an anonymous session created in this request to ``user_id``, keeping its token.

        Only such a session may skip the new token that :meth:`login` issues: its token has not
        left this process yet, so nobody can have fixed it. ``False`` if the session is gone.
        """
        if not session.new or session.user_id is not None:
            raise InvalidInputError(
                "only an anonymous session created in this request can be bound"
            )
        delta = session.delta()
        self._check_size(delta.data_bytes)
        now = self.core.clock()
        who = {F_USER: user_id, F_AUTHENTICATED: str(now)}
        if auth_level:
            who[F_AUTH_LEVEL] = auth_level
        ok = yield from self.core.update(
            session.storage_id, {**delta.set, **who}, delta.delete, expires_ms
        )
        if not ok:
            return False
        record = session.record
        record.user_id, record.authenticated_ms, record.auth_level = user_id, now, auth_level
        if expires_ms is not None:
            record.expires_ms = expires_ms
        session.mark_saved(delta)
        yield from self.user_sessions.add(user_id, session.storage_id, record.absolute_expires_ms)
        log.info("Session bound to a user in %s: %s", self._where(), short(session.storage_id))
        if self.max_per_user:
            yield from self._enforce_limit(user_id, keep=session.storage_id)
        return True

    def regenerate(
        self, session: Session, *, reauthenticated: bool = False, level: str | None = None
    ) -> Op[tuple[Session, str]]:
        """Move a session to a new token, keeping its user, data, "remember me" and when (and
        how) its user authenticated, unless ``reauthenticated`` says that was just now."""
        record = session.record
        authenticated = None if reauthenticated else record.authenticated_ms
        new, cookie = yield from self.create(
            session.user_id,
            data=dict(session),
            user_agent=record.user_agent,
            ip=record.ip,
            remember=record.remember,
            auth_level=record.auth_level if level is None else level,
            authenticated_ms=authenticated,
        )
        yield from self.destroy(
            session.storage_id, reason="reauthenticated" if reauthenticated else "regenerated"
        )
        return new, cookie

    def reauthenticate(
        self, session: Session, *, level: str | None = None
    ) -> Op[tuple[Session, str]]:
        """The user of ``session`` just proved who they are again (V7.2.4, V7.5): a new token
        with the same data, authenticated now at ``level`` (default: the level it had)."""
        if session.user_id is None:
            raise InvalidInputError("only a signed-in session can be re-authenticated")
        return (yield from self.regenerate(session, reauthenticated=True, level=level))

    def save(self, session: Session, *, expires_ms: int | None = None) -> Op[bool]:
        """Persist what changed (or destroy an invalidated session); ``False`` if it is gone.

        ``expires_ms`` sets the session's expiry as given (Django's ``set_expiry``), not slid.
        """
        if session.invalidated:
            yield from self.destroy(session.storage_id)
            return True
        delta = session.delta()
        if not delta and expires_ms is None:
            return True
        self._check_size(delta.data_bytes)
        ok = yield from self.core.update(session.storage_id, delta.set, delta.delete, expires_ms)
        if ok:
            session.mark_saved(delta)
            if expires_ms is not None:
                session.record.expires_ms = expires_ms
        return ok

    def increment(self, session: Session, key: str, by: int | float = 1) -> Op[int | float | None]:
        """Add ``by`` to the number under ``key`` (0 when absent) in one atomic step, so
        concurrent requests lose no increment; the new value, ``None`` if the session is gone.

        ``session`` sees the new value, and a later save does not write ``key`` again.
        Integers stay exact up to 2**53.
        """
        if isinstance(by, bool) or not isinstance(by, int | float) or not math.isfinite(by):
            raise DataError(f"increment by a finite int or float, not {by!r}")
        amount = str(by) if isinstance(by, int) else repr(by)
        value = yield from self._modify(
            session, key, "increment", "incr", amount, lambda old: incremented(old, by)
        )
        return value if isinstance(value, int | float) else None

    def append(self, session: Session, key: str, value: object) -> Op[list[object] | None]:
        """Append ``value`` to the list under ``key`` (a new list when absent) in one atomic
        step; the new list, ``None`` if the session is gone. ``session`` sees the new list."""
        element = encoded(value)
        stored = yield from self._modify(
            session, key, "append", "append", element, lambda old: appended(old, element)
        )
        return list(stored) if isinstance(stored, list) else None

    def _modify(
        self,
        session: Session,
        key: str,
        what: str,
        kind: str,
        argument: str,
        change: Callable[[str | None], str],
    ) -> Op[object]:
        """``key``'s value after ``change`` (of its JSON text), made in the store atomically;
        ``None`` when the session is gone.

        Plain values change inside ``modify.lua``. Sealed ones (``ENCRYPTION.KEYS``, or
        compressed past ``COMPRESS_THRESHOLD``) are opened, changed and sealed here, and written
        by compare-and-set. A session no store holds yet (an adapter's new one) is this
        request's alone: the change is made to it, for its first save.
        """
        check_key(key)
        name, values = DATA_PREFIX + key, self.values
        aad = session_aad(session.storage_id, name)
        texts: dict[str, str] = {}  # what sealed() wrote -> its text: no need to open it again

        def sealed(stored: str | None) -> str:
            text = None if stored is None else values.open(stored, aad)
            if stored is not None and text is None:
                # Changing it would replace what only another key (or a repair) can read.
                raise DataError(UNREADABLE)
            text = change(text)
            out = values.seal(text, aad)
            texts[out] = text
            return out

        try:
            if not session.storage_id:
                session[key] = parsed(change(encoded(session[key]) if key in session else None))
                return session[key]
            limit = -1 if values.key_ids else values.compress_threshold
            stored = yield from self.core.modify(
                session.storage_id, name, FieldChange(kind, argument, sealed, limit)
            )
        except (DataError, ConflictError) as exc:
            raise type(exc)(f"cannot {what} session key {key!r}: {exc}") from None
        if stored is None:
            return None
        # The script writes only plain JSON, which is its own text.
        return session.stored(key, texts.get(stored, stored))

    def try_lock(self, storage_id: str, token: str, ttl_ms: int) -> Op[bool]:
        """Take the session's lock for ``token`` unless another request holds it."""
        return (yield from self.core.lock(storage_id, token, ttl_ms))

    def unlock(self, storage_id: str, token: str) -> Op[None]:
        yield from self.core.unlock(storage_id, token)

    def reload(self, storage_id: str) -> Op[Session | None]:
        """The session as Redis holds it now, bypassing the local cache (under its lock)."""
        fields = yield from self.core.load(storage_id, touch=False, cached=False)
        if fields is None:
            return None
        return Session(SessionRecord.from_fields(storage_id, fields, self.values))

    def extend(self, session: Session) -> Op[Session | None]:
        """Slide the idle expiry now, within the absolute lifetime; ``None`` if it is gone."""
        fields = yield from self.core.load(session.storage_id, touch=True, force=True)
        if fields is None:
            return None
        self.core.events.emit("refreshed", session.storage_id, user_id=fields.get(F_USER))
        return Session(SessionRecord.from_fields(session.storage_id, fields, self.values))

    def destroy(
        self, storage_id: str, *, user_id: str | None = None, reason: str = "logout"
    ) -> Op[bool]:
        """Delete a session by storage id; ``True`` when it existed. ``reason`` is logged.

        ``reason`` goes into the ``destroyed`` event and the metrics: ``logout``, ``revoked``,
        ``limit``, ``admin``, ``login``, ``regenerated`` or ``reauthenticated`` (a new token
        replaced it), ``rekeyed`` (moved to the current ``SECRET_KEY``), or the application's own
        (``revoke_all``).

        Its entry in the user's session index goes too when the user is known (given, or in this
        process's mirror); otherwise the index drops it on its next read.
        """
        return (yield from self._destroy(storage_id, user_id, reason, None))

    def _destroy(
        self, storage_id: str, user_id: str | None, reason: str, created_ms: int | None
    ) -> Op[bool]:
        mirrored = self.core.memory.peek(storage_id, self.core.clock())
        if mirrored is not None:
            user_id = user_id or mirrored.get(F_USER)
            created_ms = created_ms or int(mirrored.get(F_CREATED, 0)) or None
        existed = yield from self.core.destroy(storage_id)
        if existed:
            log.info("Session deleted from %s (%s): %s", self._where(), reason, short(storage_id))
            self.core.events.emit("destroyed", storage_id, user_id=user_id, reason=reason)
            if self.observer is not None:
                self.observer.destroyed(storage_id, reason, created_ms)
        if user_id is not None:
            yield from self.user_sessions.remove(user_id, storage_id)
        return existed

    # -- a user's sessions ---------------------------------------------------------------------

    def user_sessions_list(self, user_id: str) -> Op[list[SessionInfo]]:
        """The live sessions of ``user_id``, oldest first (expired and destroyed ones pruned)."""
        return (yield from self.user_sessions.live(user_id))

    def revoke_user_session(
        self, user_id: str, handle: str, *, reason: str = "revoked"
    ) -> Op[bool]:
        """Destroy the session of ``user_id`` with public handle ``handle``; ``False`` if none."""
        for info in (yield from self.user_sessions.live(user_id)):
            if info.handle == handle:
                yield from self._destroy(info.storage_id, user_id, reason, info.record.created_ms)
                return True
        return False

    def revoke_user_sessions(
        self, user_id: str, *, keep_storage_id: str | None = None, reason: str = "revoked"
    ) -> Op[int]:
        """Destroy every session of ``user_id`` but ``keep_storage_id``; returns how many went.

        Every instance drops them from its memory mirror too: each destroy publishes on the
        revocation channel.
        """
        revoked = 0
        for info in (yield from self.user_sessions.live(user_id)):
            if info.storage_id != keep_storage_id:
                yield from self._destroy(info.storage_id, user_id, reason, info.record.created_ms)
                revoked += 1
        if revoked:
            log.info("%d session(s) of a user revoked (%s)", revoked, reason)
        return revoked

    def revoke_all(self, user_id: str, reason: str, *, keep: str | None = None) -> Op[int]:
        """End every session of ``user_id`` (V7.4.2, V7.4.3), but the one with storage id
        ``keep``: on an account disabled (``reason="account_disabled"``), a credential changed,
        a suspected compromise. Returns how many ended."""
        return (yield from self.revoke_user_sessions(user_id, keep_storage_id=keep, reason=reason))

    def credentials_changed(self, user_id: str, *, keep: str | None = None) -> Op[int]:
        """The hook to call when ``user_id``'s password or an authentication factor changed:
        every other session ends (V7.4.3); ``keep`` is the session that made the change."""
        return (yield from self.revoke_all(user_id, "credentials_changed", keep=keep))

    def _enforce_limit(self, user_id: str, *, keep: str) -> Op[None]:
        sessions = yield from self.user_sessions.live(user_id)
        excess = len(sessions) - self.max_per_user
        for info in [i for i in sessions if i.storage_id != keep][: max(0, excess)]:
            log.info("Session limit for a user reached: revoking %s", short(info.storage_id))
            yield from self._destroy(info.storage_id, user_id, "limit", info.record.created_ms)

    def stats(self) -> Op[SessionStats]:
        """Session counts and where sessions are stored now."""
        in_redis, in_memory = yield from self.core.count()
        total = (in_redis or 0) + in_memory
        return {
            "total_sessions": total,
            "redis_available": self.core.mode == "redis",
            "mode": self.core.mode,
            "redis_sessions": in_redis,
            "memory_sessions": in_memory,
        }

    def health(self) -> Op[RedisHealth]:
        """Redis health for load balancers: ``status`` is ``healthy``, ``degraded`` (Redis cannot
        serve) or ``misconfigured`` (Redis refuses the configuration; ``message`` names how)."""
        latency = yield from self.core.ping()
        in_redis, in_memory = yield from self.core.count()
        mode = self.core.mode
        if mode == "redis":
            message = HEALTHY_MESSAGE
        elif mode == "memory":
            message = MEMORY_MESSAGE
        else:
            message = self._degraded_message()
        if self.values.unlisted:
            message += (
                f"; {self.values.unlisted} stored values are under an encryption key that "
                "ENCRYPTION.KEYS no longer lists (treated as missing)"
            )
        fault = self.core.fault if mode == "degraded" else None
        status = "healthy"
        if fault is not None and fault.config:
            status = "misconfigured"  # not an outage: it will not pass by waiting
        elif mode == "degraded":
            status = "degraded"  # memory-only is the configured store working as configured
        return {
            "status": status,
            "message": message,
            "session_count": (in_redis or 0) + in_memory,
            "latency_ms": None if latency is None else round(latency, 3),
            "mode": mode,
            "last_error": None if mode == "redis" else self.core.last_error,
        }

    def _degraded_message(self) -> str:
        fault = self.core.fault
        if fault is None:
            return DEGRADED_HEALTH_MESSAGE
        where = "read from Redis, changes kept" if fault.reads_work else "stored"
        until = " until the configuration is fixed" if fault.config else ""
        return f"{fault.message}; sessions are {where} in memory{until} (degraded mode)"
