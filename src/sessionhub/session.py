"""The session model: a stored record and the framework-free mapping applications use.

Stores keep a session as a flat ``field -> string`` map (a Redis hash). Metadata lives in one-letter
fields; each application key is a field of its own (``d:<key>``, JSON), which is what lets an update
write only the keys that changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from .exceptions import DataError
from .jsontext import compact

Fields = dict[str, str]

F_USER = "u"
F_CREATED = "c"
F_LAST_SEEN = "l"
F_EXPIRES = "e"
F_HARD_EXPIRES = "x"
F_USER_AGENT = "a"
F_IP = "i"
DATA_PREFIX = "d:"

MAX_USER_AGENT = 512

LISTPACK_VALUE_BYTES = 64
"""Redis's default ``hash-max-listpack-value``: one longer value turns the whole hash into a
hashtable, about twice the memory. A browser User-Agent is usually longer, so it is stored in
pieces of at most this many bytes (``a``, ``a1``, ``a2``, ...)."""


def _split(name: str, value: str) -> Fields:
    """``value`` in pieces that each stay within ``LISTPACK_VALUE_BYTES`` as UTF-8."""
    size = LISTPACK_VALUE_BYTES if value.isascii() else LISTPACK_VALUE_BYTES // 4
    pieces = [value[i : i + size] for i in range(0, len(value), size)] or [""]
    return {name if i == 0 else f"{name}{i}": piece for i, piece in enumerate(pieces)}


def _joined(name: str, fields: Mapping[str, str]) -> str:
    """The value :func:`_split` stored under ``name``."""
    pieces = [fields.get(name, "")]
    while (piece := fields.get(f"{name}{len(pieces)}")) is not None:
        pieces.append(piece)
    return "".join(pieces)


_IMMUTABLE = (str, int, float, bool, type(None))
"""JSON value types that cannot change in place: an unchanged reference is an unchanged value."""

_ABSENT = object()


def encoded(value: Any) -> str:
    """``value`` as a session field holds it; raises :class:`DataError` if it cannot be."""
    return _dumps(value)


def _dumps(value: Any) -> str:
    try:
        text = compact(value)
        if not text.isascii():
            text.encode()  # a lone surrogate would fail later, on the way to Redis
    except (TypeError, ValueError) as exc:
        raise DataError(f"session values must be JSON-serialisable: {exc}") from exc
    return text


def _decoded(raw: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The values of JSON-encoded data keys, and the encodings that parsed."""
    data: dict[str, Any] = {}
    kept: dict[str, str] = {}
    for key, text in raw.items():
        try:
            data[key] = orjson.loads(text)
        except orjson.JSONDecodeError:
            try:  # what orjson refuses and json takes: integers beyond 64 bits, NaN, surrogates
                data[key] = json.loads(text)
            except ValueError:
                continue  # one unreadable key must not cost the user their session
        kept[key] = text
    return data, kept


@dataclass(eq=False)
class SessionRecord:
    """Everything a store knows about one session. Times are Unix milliseconds.

    A record read from a store keeps its data as the JSON it was stored as (``raw``) and decodes
    it only when something asks (:meth:`load_data`): most requests never read the data.
    """

    sid: str
    user_id: str | None
    created_ms: int
    last_seen_ms: int
    expires_ms: int
    hard_expires_ms: int
    user_agent: str = ""
    ip: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    # The JSON each data key was read (or last saved) as: a save compares against it.
    raw: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    decoded: bool = field(default=True, compare=False, repr=False)
    """Whether ``data`` holds ``raw`` decoded (false until :meth:`load_data` for a read record)."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SessionRecord):
            return NotImplemented
        return self._compared() == other._compared()

    __hash__ = None  # type: ignore[assignment]  # mutable, like any dataclass with eq

    def _compared(self) -> tuple[Any, ...]:
        meta = (self.sid, self.user_id, self.created_ms, self.last_seen_ms, self.expires_ms)
        return (*meta, self.hard_expires_ms, self.user_agent, self.ip, self.load_data())

    def load_data(self) -> dict[str, Any]:
        """``data``, decoded from ``raw`` on first use; a key that does not parse is dropped."""
        if not self.decoded:
            self.data, self.raw = _decoded(self.raw)
            self.decoded = True
        return self.data

    def to_fields(self) -> Fields:
        """The flat map a store writes."""
        out: Fields = {
            F_CREATED: str(self.created_ms),
            F_LAST_SEEN: str(self.last_seen_ms),
            F_EXPIRES: str(self.expires_ms),
            F_HARD_EXPIRES: str(self.hard_expires_ms),
            **_split(F_USER_AGENT, self.user_agent[:MAX_USER_AGENT]),
            F_IP: self.ip,
        }
        if self.user_id is not None:
            out[F_USER] = self.user_id
        for key, value in self.load_data().items():
            out[DATA_PREFIX + key] = _dumps(value)
        return out

    @classmethod
    def from_fields(cls, sid: str, fields: Mapping[str, str]) -> SessionRecord:
        """Parse the flat map a store returned (data stays encoded until asked for)."""
        n = len(DATA_PREFIX)
        raw = {name[n:]: text for name, text in fields.items() if name[:n] == DATA_PREFIX}
        return cls(
            sid=sid,
            user_id=fields.get(F_USER),
            created_ms=int(fields.get(F_CREATED, 0)),
            last_seen_ms=int(fields.get(F_LAST_SEEN, 0)),
            expires_ms=int(fields.get(F_EXPIRES, 0)),
            hard_expires_ms=int(fields.get(F_HARD_EXPIRES, 0)),
            user_agent=_joined(F_USER_AGENT, fields),
            ip=fields.get(F_IP, ""),
            raw=raw,
            decoded=not raw,
        )


def check_key(key: object) -> None:
    """Raise :class:`DataError` unless ``key`` can name a session value."""
    if not isinstance(key, str):
        raise DataError(f"session keys must be strings, not {type(key).__name__}")
    if not key.isascii():
        try:
            key.encode()
        except UnicodeEncodeError as exc:
            raise DataError(f"session keys must be valid Unicode text: {exc}") from exc


def incremented(text: str | None, by: int | float) -> str:
    """The JSON number ``text`` plus ``by`` (``modify.lua``'s ``incr``, for the memory store)."""
    current: Any = 0 if text is None else _decoded({"": text})[0].get("")
    if isinstance(current, bool) or not isinstance(current, int | float):
        raise DataError("session value is not a number")
    return _dumps(current + by)


def appended(text: str | None, element: str) -> str:
    """The JSON list ``text`` with the encoded ``element`` at its end (``modify.lua``'s
    ``append``, for the memory store)."""
    if text is None or text == "[]":
        return f"[{element}]"
    if text[:1] != "[" or text[-1:] != "]":
        raise DataError("session value is not a list")
    return f"{text[:-1]},{element}]"


def slid_expiry(now_ms: int, idle_ms: int, hard_expires_ms: int) -> int:
    """The new idle expiry after activity at ``now_ms``: never past the absolute lifetime."""
    return min(now_ms + idle_ms, hard_expires_ms)


@dataclass(frozen=True)
class Delta:
    """What a save must write: data fields to set (already encoded) and data fields to delete."""

    set: Fields
    delete: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.set or self.delete)


NO_CHANGE = Delta({}, ())


class Session(MutableMapping[str, Any]):
    """A session as an application sees it: a mapping of its data plus read-only metadata.

    ``new`` is true for a session created in this request, ``modified`` once its data differs
    from what was loaded (in-place changes to nested values count too), and :meth:`invalidate`
    asks the integration to destroy it at the end of the request.
    """

    def __init__(self, record: SessionRecord, *, new: bool = False) -> None:
        self.record = record
        self.new = new
        self.invalidated = False
        # What the app sees, decoded on first use (see _values()); what the store holds stays in
        # the record: ``record.data`` and its encodings ``record.raw``.
        self._data: dict[str, Any] | None = None

    def _values(self) -> dict[str, Any]:
        if self._data is None:
            record = self.record
            data = record.load_data()
            if data and not record.raw:  # made in this process, never read from a store
                record.raw = {k: _dumps(v) for k, v in data.items()}
            self._data = dict(data)
        return self._data

    @property
    def sid(self) -> str:
        """The storage id (keyed hash of the token); never the token itself."""
        return self.record.sid

    @property
    def user_id(self) -> str | None:
        """The user the session is bound to, or ``None`` for an anonymous session."""
        return self.record.user_id

    @property
    def modified(self) -> bool:
        """Whether the data differs from what the store holds."""
        return bool(self.delta())

    def __getitem__(self, key: str) -> Any:
        return self._values()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        check_key(key)
        _dumps(value)  # fail at assignment, where the bug is, not at save time
        self._values()[key] = value

    def stored(self, key: str, text: str) -> Any:
        """Take ``text``, which the store now holds for ``key`` (an atomic change), as both the
        value and what was saved: a later save writes nothing for ``key``."""
        value = _decoded({key: text})[0][key]
        record = self.record
        if record.decoded:
            record.data[key] = value
        record.raw[key] = _dumps(value)  # what a save compares with, in its own encoding
        if self._data is not None:
            self._data[key] = value
        return value

    def __delitem__(self, key: str) -> None:
        del self._values()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())

    def __len__(self) -> int:
        return len(self._values())

    def invalidate(self) -> None:
        """Mark the session for destruction; its data is cleared at once."""
        self.invalidated = True
        self._values().clear()

    def delta(self) -> Delta:
        """The data fields a save must write: changed or new keys, and removed keys."""
        if self._data is None:
            return NO_CHANGE  # never looked at, so nothing changed
        loaded, saved = self.record.data, self.record.raw  # _data began as a copy of loaded
        changed: Fields = {}
        for key, value in self._data.items():
            if type(value) in _IMMUTABLE and value is loaded.get(key, _ABSENT):
                continue  # the very object that was saved, and it cannot have changed in place
            encoded = _dumps(value)
            if saved.get(key) != encoded:
                changed[DATA_PREFIX + key] = encoded
        removed = tuple(DATA_PREFIX + k for k in saved if k not in self._data)
        return Delta(changed, removed)

    def mark_saved(self) -> None:
        """Take the current data as what the store holds, after a successful save."""
        self.new = False
        if self._data is None:
            return
        self.record.data = dict(self._data)
        self.record.raw = {k: _dumps(v) for k, v in self._data.items()}

    def __repr__(self) -> str:
        return f"<Session {self.sid[:8]}... user={self.user_id!r} keys={len(self)}>"
