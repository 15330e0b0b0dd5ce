"""Sessions as applications see them: cookies in, :class:`~sessionhub.session.Session` out.

Like the stores, every method here is an I/O-free operation; :mod:`sessionhub.hub` runs them
over a blocking or an asyncio Redis client.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping

from .exceptions import InvalidInputError
from .session import F_USER, Session, SessionRecord
from .stores.base import Op
from .stores.redis import KeySpace
from .stores.resilient import ResilientCore
from .stores.userkeys import UserKeys
from .tokens import TokenCodec, short
from .usersessions import SessionInfo, UserSessionIndex
from .views import RedisHealth, SessionStats

log = logging.getLogger("sessionhub.sessions")

VERIFIED_COOKIES = 4096
"""Verified cookie -> storage id pairs each manager remembers (about 0.6 MB when full)."""

HEALTHY_MESSAGE = "Redis connection OK"
DEGRADED_HEALTH_MESSAGE = "Redis unavailable; sessions are stored in memory (degraded mode)"
MEMORY_MESSAGE = "Memory-only session store (SESSION.TYPE = memory)"


class SessionManager:
    """Creates, opens, saves and destroys sessions on a :class:`ResilientCore`."""

    def __init__(self, core: ResilientCore, codec: TokenCodec, *, max_per_user: int = 0) -> None:
        self.core = core
        self.codec = codec
        self.max_per_user = max_per_user
        """``SESSION.MAX_PER_USER``: a login beyond it revokes the oldest session (0: no cap)."""
        keys = core.redis_ops.keys if core.redis_ops is not None else KeySpace()
        self.user_keys = UserKeys(keys.prefix, keys.shards)
        self.user_sessions = UserSessionIndex(core, codec, self.user_keys)
        # A browser sends the same cookie on every request: remember the storage ids of cookies
        # that verified, so a request pays a dict lookup instead of a regex and two HMACs. A
        # cookie that fails raises, and exceptions are never cached.
        self._sid_for_cookie = functools.lru_cache(maxsize=VERIFIED_COOKIES)(self._verified_sid)

    def _where(self) -> str:
        return "Redis" if self.core.mode == "redis" else "memory"

    def sid_for_cookie(self, cookie: str) -> str:
        """The storage id behind a cookie; raises :class:`.InvalidTokenError`."""
        return self._sid_for_cookie(cookie)

    def _verified_sid(self, cookie: str) -> str:
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
        sid = self.sid_for_cookie(cookie)
        fields = yield from self.core.load(sid, touch=touch or force, force=force)
        return None if fields is None else Session(SessionRecord.from_fields(sid, fields))

    def create(
        self,
        user_id: str | None = None,
        *,
        data: Mapping[str, object] | None = None,
        user_agent: str = "",
        ip: str = "",
    ) -> Op[tuple[Session, str]]:
        """A new session with a fresh token; returns it and the cookie value that carries it."""
        token = self.codec.new_token()
        sid = self.codec.storage_id(token)
        now = self.core.clock()
        lt = self.core.lifetimes
        hard = now + lt.absolute_ms
        record = SessionRecord(
            sid=sid,
            user_id=user_id,
            created_ms=now,
            last_seen_ms=now,
            expires_ms=min(now + lt.idle_ms, hard),
            hard_expires_ms=hard,
            user_agent=user_agent,
            ip=ip,
            data=dict(data or {}),
        )
        index = () if user_id is None else (self.user_sessions.add_call(user_id, sid, hard),)
        in_redis = yield from self.core.create(sid, record.to_fields(), record.expires_ms, index)
        log.info("Session created in %s: %s", self._where(), short(sid))
        if user_id is not None:
            if not in_redis:
                self.user_sessions.queue(user_id, sid, hard)
            if self.max_per_user:
                yield from self._enforce_limit(user_id, keep=sid)
        session = Session(record, new=True)
        return session, self.codec.cookie_value(token)

    def login(
        self,
        user_id: str,
        *,
        previous: Session | None = None,
        user_agent: str = "",
        ip: str = "",
    ) -> Op[tuple[Session, str]]:
        """Bind a *new* token to ``user_id`` (fixation protection), carrying over prior data."""
        data = dict(previous) if previous is not None else None
        if previous is not None:
            yield from self.destroy(previous.sid)
        return (yield from self.create(user_id, data=data, user_agent=user_agent, ip=ip))

    def bind_user(self, session: Session, user_id: str) -> Op[bool]:
        """Bind an anonymous session created in this request to ``user_id``, keeping its token.

        Only such a session may skip the new token that :meth:`login` issues: its token has not
        left this process yet, so nobody can have fixed it. ``False`` if the session is gone.
        """
        if not session.new or session.user_id is not None:
            raise InvalidInputError(
                "only an anonymous session created in this request can be bound"
            )
        delta = session.delta()
        ok = yield from self.core.update(session.sid, {**delta.set, F_USER: user_id}, delta.delete)
        if not ok:
            return False
        record = session.record
        record.user_id = user_id
        session.mark_saved()
        yield from self.user_sessions.add(user_id, session.sid, record.hard_expires_ms)
        log.info("Session bound to a user in %s: %s", self._where(), short(session.sid))
        if self.max_per_user:
            yield from self._enforce_limit(user_id, keep=session.sid)
        return True

    def regenerate(self, session: Session) -> Op[tuple[Session, str]]:
        """Move a session to a new token, keeping its user, data and lifetime."""
        new, cookie = yield from self.create(
            session.user_id,
            data=dict(session),
            user_agent=session.record.user_agent,
            ip=session.record.ip,
        )
        yield from self.destroy(session.sid)
        return new, cookie

    def save(self, session: Session) -> Op[bool]:
        """Persist what changed (or destroy an invalidated session); ``False`` if it is gone."""
        if session.invalidated:
            yield from self.destroy(session.sid)
            return True
        delta = session.delta()
        if not delta:
            return True
        ok = yield from self.core.update(session.sid, delta.set, delta.delete)
        if ok:
            session.mark_saved()
        return ok

    def extend(self, session: Session) -> Op[Session | None]:
        """Slide the idle expiry now, within the absolute lifetime; ``None`` if it is gone."""
        fields = yield from self.core.load(session.sid, touch=True, force=True)
        if fields is None:
            return None
        return Session(SessionRecord.from_fields(session.sid, fields))

    def destroy(self, sid: str, *, user_id: str | None = None) -> Op[bool]:
        """Delete a session by storage id; ``True`` when it existed.

        Its entry in the user's session index goes too when the user is known (given, or in this
        process's mirror); otherwise the index drops it on its next read.
        """
        if user_id is None:
            mirrored = self.core.memory.peek(sid, self.core.clock())
            user_id = None if mirrored is None else mirrored.get(F_USER)
        existed = yield from self.core.destroy(sid)
        if existed:
            log.info("Session deleted from %s: %s", self._where(), short(sid))
        if user_id is not None:
            yield from self.user_sessions.remove(user_id, sid)
        return existed

    # -- a user's sessions ---------------------------------------------------------------------

    def user_sessions_list(self, user_id: str) -> Op[list[SessionInfo]]:
        """The live sessions of ``user_id``, oldest first (expired and destroyed ones pruned)."""
        return (yield from self.user_sessions.live(user_id))

    def revoke_user_session(self, user_id: str, handle: str) -> Op[bool]:
        """Destroy the session of ``user_id`` with public handle ``handle``; ``False`` if none."""
        for info in (yield from self.user_sessions.live(user_id)):
            if info.handle == handle:
                yield from self.destroy(info.sid, user_id=user_id)
                return True
        return False

    def revoke_user_sessions(self, user_id: str, *, keep_sid: str | None = None) -> Op[int]:
        """Destroy every session of ``user_id`` but ``keep_sid``; returns how many went."""
        revoked = 0
        for info in (yield from self.user_sessions.live(user_id)):
            if info.sid != keep_sid:
                yield from self.destroy(info.sid, user_id=user_id)
                revoked += 1
        return revoked

    def _enforce_limit(self, user_id: str, *, keep: str) -> Op[None]:
        sessions = yield from self.user_sessions.live(user_id)
        excess = len(sessions) - self.max_per_user
        for info in [i for i in sessions if i.sid != keep][: max(0, excess)]:
            log.info("Session limit for a user reached: revoking %s", short(info.sid))
            yield from self.destroy(info.sid, user_id=user_id)

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
