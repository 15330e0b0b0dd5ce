"""What every adapter shares, with no framework in sight.

:class:`RequestSession` is the session a request handler sees. It opens lazily from the cookie,
records what the handler asks for (log in, log out, regenerate) and leaves all I/O to
:func:`commit`, an operation that the blocking and the asyncio hubs both run. Anonymous sessions
cost nothing until the handler stores a value: an empty session has no Redis key and no cookie.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..exceptions import InvalidInputError
from ..manager import SessionManager
from ..session import Session, SessionRecord
from ..stores.base import Op

PERMANENT_KEY = "_permanent"
"""Where Flask keeps ``session.permanent``; stored only when it differs from the default."""


def blank_session() -> Session:
    """A session that exists only in this request: no storage id, nothing in any store yet."""
    record = SessionRecord(
        sid="", user_id=None, created_ms=0, last_seen_ms=0, expires_ms=0, hard_expires_ms=0
    )
    return Session(record, new=True)


@dataclass(frozen=True)
class CookieAction:
    """What the response must do with the session cookie."""

    set_value: str | None = None
    """A new cookie value to send."""
    clear: bool = False
    """Tell the browser to drop its cookie."""
    max_age: int | None = None
    """``Max-Age`` of a permanent cookie in seconds; ``None`` for a browser-session cookie."""


NO_COOKIE_CHANGE = CookieAction()


class RequestSession(MutableMapping[str, Any]):
    """The session of one request: a mapping with Flask's ``new``/``modified``/``permanent``.

    Only changed keys are written at the end of the request. :meth:`login`, :meth:`logout` and
    :meth:`regenerate` take effect then too, each issuing a fresh token when it changes who or
    what the session is (session fixation protection).
    """

    def __init__(
        self,
        session: Session | None,
        *,
        had_cookie: bool = False,
        permanent_default: bool = False,
    ) -> None:
        self._inner = session if session is not None else blank_session()
        self.had_cookie = had_cookie
        self.permanent_default = permanent_default
        self.accessed = False
        self._forced_modified = False
        self._login_user: str | None = None
        self._logout = False
        self._regenerate = False
        self._remember = False
        self._level: str | None = None
        self._reauthenticated = False
        self.issued_cookie: str | None = None
        """A cookie the adapter issued while opening (a carried-over session) to send back."""

    # -- mapping -----------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        return self._inner[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.accessed = True
        self._inner[key] = value

    def __delitem__(self, key: str) -> None:
        self.accessed = True
        del self._inner[key]

    def __iter__(self) -> Iterator[str]:
        self.accessed = True
        return iter(self._inner)

    def __len__(self) -> int:
        return len(self._inner)

    def __repr__(self) -> str:
        return f"<RequestSession user={self.user_id!r} keys={sorted(self._inner)}>"

    # -- state -------------------------------------------------------------------------------

    @property
    def session(self) -> Session:
        """The library session underneath (``sid == ""`` until the first save)."""
        return self._inner

    @property
    def stored(self) -> bool:
        """Whether a store holds this session (it had a valid cookie or was saved)."""
        return bool(self._inner.sid)

    @property
    def new(self) -> bool:
        """True until the session has been saved once (Flask's ``session.new``)."""
        return not self.stored

    @property
    def modified(self) -> bool:
        """Whether the data changed in this request; in-place edits of nested values count."""
        return (
            self._forced_modified
            or self._inner.modified
            or self._logout
            or self._regenerate
            or self._reauthenticated
            or self._login_user is not None
        )

    @modified.setter
    def modified(self, value: bool) -> None:
        # Flask code sets ``session.modified = True`` after in-place edits; changes are detected
        # anyway, so this only matters for forcing a save of an otherwise unchanged session.
        self._forced_modified = value

    @property
    def permanent(self) -> bool:
        """Flask's ``session.permanent``: whether the cookie outlives the browser session."""
        return bool(self._inner.get(PERMANENT_KEY, self.permanent_default))

    @permanent.setter
    def permanent(self, value: bool) -> None:
        # Only a deviation from the default is data; otherwise it would make every session
        # non-empty and give each anonymous visitor a Redis key.
        if bool(value) == self.permanent_default:
            self._inner.pop(PERMANENT_KEY, None)
        else:
            self._inner[PERMANENT_KEY] = bool(value)

    @property
    def user_id(self) -> str | None:
        """The user this session belongs to (after :meth:`login`, at once), or ``None``."""
        if self._logout:
            return None
        if self._login_user is not None:
            return self._login_user
        return self._inner.user_id

    # -- actions -----------------------------------------------------------------------------

    def login(self, user_id: str, *, remember: bool = False, level: str | None = None) -> None:
        """Bind the session to ``user_id`` under a new token, keeping its data; ``remember``
        gives it the "remember me" lifetimes, ``level`` names how the user authenticated."""
        self._logout = False
        self._login_user = str(user_id)
        self._remember, self._level = remember, level

    def reauthenticate(self, level: str | None = None) -> None:
        """The user proved who they are again: a new token at the end of the request, same
        data, authenticated now (at ``level``, default the session's own)."""
        if self.user_id is None:
            raise InvalidInputError("only a signed-in session can be re-authenticated")
        self._reauthenticated, self._level = True, level

    def logout(self) -> None:
        """Destroy the session and its cookie at the end of the request."""
        self._login_user = None
        self._logout = True
        self._inner.invalidate()

    def regenerate(self) -> None:
        """Move the session to a new token at the end of the request (fixation protection)."""
        self._regenerate = True

    def clear(self) -> None:
        """Remove every key (like ``dict.clear``); an anonymous empty session is then dropped."""
        self.accessed = True
        for key in list(self._inner):
            del self._inner[key]


def cookie_max_age(session: Session, permanent: bool) -> int | None:
    """``Max-Age`` for a permanent or remembered session: the rest of its absolute lifetime."""
    if not (permanent or session.record.remember):
        return None
    remaining = session.record.hard_expires_ms - session.record.last_seen_ms
    return max(0, remaining // 1000)


def commit(
    manager: SessionManager, rs: RequestSession, *, user_agent: str = "", ip: str = ""
) -> Op[CookieAction]:
    """Write what the request changed and say what to do with the cookie."""
    # A session opened with a former SECRET_KEY's cookie moved: its client needs the new cookie.
    moved = rs.session.reissued_cookie
    action = yield from _commit(manager, rs, user_agent=user_agent, ip=ip)
    issued, rs.issued_cookie = rs.issued_cookie or moved, None
    if issued and action == NO_COOKIE_CHANGE and rs.stored:
        return CookieAction(set_value=issued, max_age=cookie_max_age(rs.session, rs.permanent))
    return action


def _commit(
    manager: SessionManager, rs: RequestSession, *, user_agent: str, ip: str
) -> Op[CookieAction]:
    inner = rs.session
    if rs._logout or inner.invalidated:
        if rs.stored:
            yield from manager.destroy(inner.sid)
        return CookieAction(clear=True) if rs.had_cookie else NO_COOKIE_CHANGE
    new: Session | None = None
    cookie = ""
    if rs._login_user is not None:
        remember, level = rs._remember, rs._level or ""
        if rs.stored:
            new, cookie = yield from manager.login(
                rs._login_user,
                previous=inner,
                user_agent=user_agent,
                ip=ip,
                remember=remember,
                auth_level=level,
            )
        else:
            new, cookie = yield from manager.create(
                rs._login_user,
                data=dict(inner),
                user_agent=user_agent,
                ip=ip,
                remember=remember,
                auth_level=level,
            )
    elif not rs.stored:
        if not len(inner):
            # Nothing to keep: no Redis key, and a stale or forged cookie is dropped.
            return CookieAction(clear=True) if rs.had_cookie else NO_COOKIE_CHANGE
        new, cookie = yield from manager.create(data=dict(inner), user_agent=user_agent, ip=ip)
    elif rs._reauthenticated:
        new, cookie = yield from manager.reauthenticate(inner, level=rs._level)
    elif rs._regenerate:
        new, cookie = yield from manager.regenerate(inner)
    elif inner.modified and not len(inner) and inner.user_id is None:
        # Emptied anonymous session: gone, like Flask-Session does it. (`modified` is tested
        # first because it answers without decoding the data of a session nobody looked at.)
        yield from manager.destroy(inner.sid)
        return CookieAction(clear=True)
    else:
        saved = yield from manager.save(inner)
        if saved:
            return NO_COOKIE_CHANGE
        # Expired or destroyed by someone else during the request: keep what this request has.
        new, cookie = yield from manager.create(
            inner.user_id, data=dict(inner), user_agent=user_agent, ip=ip
        )
    rs._inner = new
    rs._login_user = None
    rs._regenerate = rs._reauthenticated = False
    rs._forced_modified = False
    return CookieAction(set_value=cookie, max_age=cookie_max_age(new, rs.permanent))


def merge_settings(base: Settings | Mapping[str, Any] | None, **sections: Any) -> Settings:
    """``base`` (Settings or an UPPERCASE YAML-style mapping) with ``sections`` filled in.

    ``sections`` (``SESSION={...}``, ``REDIS={...}``, ``SECRET_KEY=...``) only supply keys that
    ``base`` does not set itself: the application's explicit SessionHub settings always win.
    """
    if isinstance(base, Settings):
        data: dict[str, Any] = base.model_dump(by_alias=True, exclude_unset=True)
    else:
        data = {k: dict(v) if isinstance(v, Mapping) else v for k, v in (base or {}).items()}
    for name, value in sections.items():
        if isinstance(value, Mapping):
            section = data.setdefault(name, {})
            for key, item in value.items():
                if key == "KEY_PREFIX" and section.get("REDIS_KEY_PREFIX") is not None:
                    continue  # the Flask-Session spelling of KEY_PREFIX is set: it wins
                section.setdefault(key, item)
        elif value is not None:
            data.setdefault(name, value)
    return Settings.model_validate(data)
