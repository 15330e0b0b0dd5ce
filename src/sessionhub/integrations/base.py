"""What every adapter shares, with no framework in sight.

:class:`RequestSession` is the session a request handler sees. It opens lazily from the cookie,
records what the handler asks for (log in, log out, regenerate) and leaves all I/O to
:func:`commit`, an operation that the blocking and the asyncio hubs both run. Anonymous sessions
cost nothing until the handler stores a value: an empty session has no Redis key and no cookie.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass
from typing import Any

from ..config import Settings, validated
from ..exceptions import InvalidInputError
from ..manager import SessionManager
from ..session import Session, SessionRecord, check_item
from ..stores.base import Op

PERMANENT_KEY = "_permanent"
"""Where Flask keeps ``session.permanent``; stored only when it differs from the default."""


def blank_session(data: Mapping[str, Any] | None = None) -> Session:
    """A session that exists only in this request: no storage id, nothing in any store yet."""
    record = SessionRecord(
        storage_id="",
        user_id=None,
        created_ms=0,
        last_seen_ms=0,
        expires_ms=0,
        absolute_expires_ms=0,
        data=dict(data or {}),
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


class RequestSession(dict[str, Any]):
    """The session of one request: a real ``dict`` with Flask's and Starlette's flags.

    The values live in the dict itself, so ``JSONResponse(session)``, ``session |= {...}`` and
    ``dict(session)`` see them as they see any dict. What changed is found at the end of the
    request by comparing with what the store holds, so only changed keys are written, edits made
    in place to nested values count, and so do changes made through dict's own C methods.
    :meth:`login`, :meth:`logout` and :meth:`regenerate` take effect then too, each issuing a
    fresh token when it changes who or what the session is (session fixation protection).

    The stored data is decoded into the dict on first use through any dict method (or through
    :meth:`mark_accessed`, which Starlette's ``request.session`` calls), so a request that only
    asks who is signed in decodes nothing. Code handed the bare object must touch it before
    giving it to C code that reads a dict's storage directly (``json.dumps``, ``orjson``):
    every adapter does that before the handler runs.

    ``accessed`` follows Flask and Starlette together: reads by key, every change, and
    Starlette's ``request.session`` set it; it decides ``Vary: Cookie``.
    """

    def __init__(
        self,
        session: Session | Mapping[str, Any] | None = None,
        *,
        had_cookie: bool = False,
        permanent_default: bool = False,
        cookie_max_age: int | None = None,
    ) -> None:
        super().__init__()
        if session is None or not isinstance(session, Session):
            # A mapping is what a store would have loaded: the baseline, not a change.
            session = blank_session(session)
        self._inner = session
        self._pending = True
        self.had_cookie = had_cookie
        self.permanent_default = permanent_default
        self.cookie_max_age = cookie_max_age
        """Cap on a permanent cookie's ``Max-Age`` (``SESSION.COOKIE_MAX_AGE``)."""
        self.accessed = False
        self._touched = False
        self._login_user: str | None = None
        self._logout = False
        self._regenerate = False
        self._remember = False
        self._level: str | None = None
        self._reauthenticated = False
        self.issued_cookie: str | None = None
        """A cookie the adapter issued while opening (a carried-over session) to send back."""

    def load(self) -> RequestSession:
        """Decode the stored data into the dict now (it happens on first use anyway)."""
        if self._pending:
            self._pending = False
            self._inner.adopt(self)
        return self

    # -- dict: each method loads first, then does what dict does ------------------------------

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        return dict.__getitem__(self.load(), key)

    def get(self, key: str, default: Any = None) -> Any:
        """``dict.get``, counted as an access."""
        self.accessed = True
        return dict.get(self.load(), key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        check_item(key, value)
        self.mark_modified()
        dict.__setitem__(self.load(), key, value)

    def __delitem__(self, key: str) -> None:
        self.mark_modified()
        dict.__delitem__(self.load(), key)

    def setdefault(self, key: str, default: Any = None) -> Any:
        """``dict.setdefault``; storing the default is checked like any assignment."""
        self.accessed = True
        if not dict.__contains__(self.load(), key):
            self[key] = default
        return dict.__getitem__(self, key)

    def pop(self, key: str, *default: Any) -> Any:
        """``dict.pop``; popping a missing key is no access (as in Starlette)."""
        if dict.__contains__(self.load(), key):
            self.mark_modified()
        return dict.pop(self, key, *default)

    def popitem(self) -> tuple[str, Any]:
        """``dict.popitem``: the last key stored goes first."""
        item = dict.popitem(self.load())
        self.mark_modified()
        return item

    def clear(self) -> None:
        """Remove every key; an anonymous session left empty is then dropped from the store."""
        self.mark_modified()
        dict.clear(self.load())

    def update(self, *args: Any, **kwargs: Any) -> None:
        """``dict.update``, each value checked like an assignment."""
        self.load()
        for key, value in dict(*args, **kwargs).items():
            self[key] = value
        self.mark_modified()

    def __ior__(self, other: Any) -> RequestSession:  # type: ignore[override]
        self.update(other)
        return self

    def __or__(self, other: Any) -> Any:
        return dict.__or__(self.load(), other)

    def __ror__(self, other: Any) -> Any:
        return dict.__ror__(self.load(), other)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self.load(), key)

    def __iter__(self) -> Iterator[str]:
        return dict.__iter__(self.load())

    def __reversed__(self) -> Iterator[str]:
        return dict.__reversed__(self.load())

    def __len__(self) -> int:
        return dict.__len__(self.load())

    def __eq__(self, other: object) -> bool:
        return dict.__eq__(self.load(), other)

    def __ne__(self, other: object) -> bool:
        return dict.__ne__(self.load(), other)

    __hash__ = None  # mutable, like dict

    def keys(self) -> KeysView[str]:  # type: ignore[override]
        """``dict.keys``."""
        return dict.keys(self.load())

    def values(self) -> ValuesView[Any]:  # type: ignore[override]
        """``dict.values``."""
        return dict.values(self.load())

    def items(self) -> ItemsView[str, Any]:  # type: ignore[override]
        """``dict.items``."""
        return dict.items(self.load())

    def copy(self) -> dict[str, Any]:
        """A plain ``dict`` with the same values (what ``dict.copy`` gives for a subclass)."""
        return dict(dict.items(self.load()))

    def __reduce__(self) -> Any:
        return (dict, (dict(dict.items(self.load())),))

    def __repr__(self) -> str:
        return f"<RequestSession user={self.user_id!r} keys={sorted(self)}>"

    # -- Starlette's flags -------------------------------------------------------------------

    def mark_accessed(self) -> None:
        """Starlette's hook, called by ``request.session``: the response varies on the cookie."""
        self.accessed = True
        self.load()  # before the handler can give the dict to json.dumps, which reads it raw

    def mark_modified(self) -> None:
        """Starlette's hook, called on every change made through the dict: ``modified`` is then
        true, as in Flask and Starlette, even if the values end up as they were. What is
        written is still only what differs from the store."""
        self.accessed = True
        self._touched = True

    # -- state -------------------------------------------------------------------------------

    @property
    def session(self) -> Session:
        """The library session underneath (``storage_id == ""`` until the first save)."""
        return self._inner

    @property
    def stored(self) -> bool:
        """Whether a store holds this session (it had a valid cookie or was saved)."""
        return bool(self._inner.storage_id)

    @property
    def new(self) -> bool:
        """True until the session has been saved once (Flask's ``session.new``)."""
        return not self.stored

    @property
    def storage_id(self) -> str:
        """The storage id (a keyed hash of the cookie's token, never the token, so safe to
        log); ``""`` until the session is stored."""
        return self._inner.storage_id

    @property
    def modified(self) -> bool:
        """Whether the data was changed through the dict in this request (as Flask and Starlette
        count it), or differs from the store (in-place edits of nested values count)."""
        return (
            self._touched
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
        self._touched = value

    @property
    def permanent(self) -> bool:
        """Flask's ``session.permanent``: whether the cookie outlives the browser session."""
        record = self._inner.record
        if self._pending and not record.decoded:
            # Asked on every save: answered from the stored JSON, without decoding the rest.
            raw = record.raw.get(PERMANENT_KEY)
            return self.permanent_default if raw is None else raw == "true"
        return bool(dict.get(self.load(), PERMANENT_KEY, self.permanent_default))

    @permanent.setter
    def permanent(self, value: bool) -> None:
        # Only a deviation from the default is data; otherwise it would make every session
        # non-empty and give each anonymous visitor a Redis key.
        self.mark_modified()
        if bool(value) == self.permanent_default:
            dict.pop(self.load(), PERMANENT_KEY, None)
        else:
            dict.__setitem__(self.load(), PERMANENT_KEY, bool(value))

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
        self.load()
        self._inner.invalidate()

    def regenerate(self) -> None:
        """Move the session to a new token at the end of the request (fixation protection)."""
        self._regenerate = True

    def _replace(self, session: Session) -> None:
        """Continue on ``session`` (what a save moved this one to), its data now the baseline."""
        self._inner = session
        self._pending = False
        session.adopt(self)
        self._login_user = None
        self._regenerate = self._reauthenticated = False
        self._touched = False


def cookie_max_age(rs: RequestSession) -> int | None:
    """``Max-Age`` for a permanent or remembered session: the rest of its absolute lifetime, at
    most the configured cap."""
    if not (rs.permanent or rs.session.record.remember):
        return None
    record = rs.session.record
    remaining = max(0, (record.absolute_expires_ms - record.last_seen_ms) // 1000)
    return remaining if rs.cookie_max_age is None else min(remaining, rs.cookie_max_age)


def commit(
    manager: SessionManager, rs: RequestSession, *, user_agent: str = "", ip: str = ""
) -> Op[CookieAction]:
    """Write what the request changed and say what to do with the cookie."""
    # A session opened with a former SECRET_KEY's cookie moved: its client needs the new cookie.
    moved = rs.session.reissued_cookie
    action = yield from _commit(manager, rs, user_agent=user_agent, ip=ip)
    issued, rs.issued_cookie = rs.issued_cookie or moved, None
    if issued and action == NO_COOKIE_CHANGE and rs.stored:
        return CookieAction(set_value=issued, max_age=cookie_max_age(rs))
    return action


def _commit(
    manager: SessionManager, rs: RequestSession, *, user_agent: str, ip: str
) -> Op[CookieAction]:
    inner = rs.session
    if rs._logout or inner.invalidated:
        if rs.stored:
            yield from manager.destroy(inner.storage_id)
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
    elif inner.user_id is None and inner.emptied:
        # Emptied anonymous session: gone, like Flask-Session does it.
        yield from manager.destroy(inner.storage_id)
        return CookieAction(clear=True)
    else:
        saved = yield from manager.save(inner)
        if saved:
            return NO_COOKIE_CHANGE
        # Expired or destroyed by someone else during the request: keep what this request has.
        new, cookie = yield from manager.create(
            inner.user_id, data=dict(inner), user_agent=user_agent, ip=ip
        )
    rs._replace(new)
    return CookieAction(set_value=cookie, max_age=cookie_max_age(rs))


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
    return validated(data)
