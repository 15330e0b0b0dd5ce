"""The session model: a stored record and the framework-free mapping applications use.

Stores keep a session as a flat ``field -> string`` map (a Redis hash). Metadata lives in one-letter
fields; each application key is a field of its own (``d:<key>``, JSON), which is what lets an update
write only the keys that changed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from sys import intern
from typing import Any

import orjson

from .exceptions import DataError
from .jsontext import compact
from .valuecodec import MARK, PLAIN, ValueCodec, session_aad

Fields = dict[str, str]

F_USER = "u"
F_CREATED = "c"
F_LAST_SEEN = "l"
F_EXPIRES = "e"
F_ABSOLUTE_EXPIRES = "x"
F_USER_AGENT = "a"
F_IP = "i"
F_AUTHENTICATED = "t"
F_AUTH_LEVEL = "v"
F_IDLE = "w"
DATA_PREFIX = "d:"

MAX_USER_AGENT = 512

LISTPACK_VALUE_BYTES = 64
"""Redis's default ``hash-max-listpack-value``: one longer value turns the whole hash into a
hashtable, about twice the memory. A browser User-Agent is usually longer, so it is stored in
pieces of at most this many bytes (``a``, ``a1``, ``a2``, ...)."""


def split(name: str, value: str) -> Fields:
    """``value`` in pieces that each stay within ``LISTPACK_VALUE_BYTES`` as UTF-8."""
    size = LISTPACK_VALUE_BYTES if value.isascii() else LISTPACK_VALUE_BYTES // 4
    pieces = [value[i : i + size] for i in range(0, len(value), size)] or [""]
    return {name if i == 0 else f"{name}{i}": piece for i, piece in enumerate(pieces)}


def joined(name: str, fields: Mapping[str, str]) -> str:
    """The value :func:`split` stored under ``name``."""
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


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def check_item(key: object, value: Any) -> None:
    """Refuse what a store cannot keep: a key that is not a string (or not valid Unicode text),
    a value that is not JSON."""
    check_key(key)
    _dumps(value)  # fail at assignment, where the bug is, not at save time


def _decoded(
    raw: Mapping[str, str], storage_id: str, values: ValueCodec
) -> tuple[dict[str, Any], dict[str, str]]:
    """The values of stored data keys, and the JSON of those that opened and parsed."""
    data: dict[str, Any] = {}
    kept: dict[str, str] = {}
    for key, stored in raw.items():
        text = stored
        if stored[:1] == MARK:
            opened = values.open(stored, session_aad(storage_id, DATA_PREFIX + key))
            if opened is None:
                continue  # under a key no longer listed: missing, as an unparsable key is
            text = opened
        try:
            data[key] = parsed(text)
        except ValueError:
            continue  # one unreadable key must not cost the user their session
        kept[key] = text
    return data, kept


_LONG_NUMBER = re.compile(r"[0-9]{19}")
"""A run of digits that may be an integer beyond 64 bits, which orjson reads as a float without
a word (3.13 does): such text goes to the standard library, which keeps every integer exact."""


def parsed(text: str) -> Any:
    """``text`` as JSON; ``ValueError`` when it is none."""
    if len(text) < 19 or _LONG_NUMBER.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:  # what json takes: NaN, lone surrogates
            pass
    return json.loads(text)


@dataclass(eq=False)
class SessionRecord:
    """Everything a store knows about one session. Times are Unix milliseconds.

    A record read from a store keeps its data as the JSON it was stored as (``raw``) and decodes
    it only when something asks (:meth:`load_data`): most requests never read the data.
    """

    storage_id: str
    user_id: str | None
    created_ms: int
    last_seen_ms: int
    expires_ms: int
    absolute_expires_ms: int
    user_agent: str = ""
    ip: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    authenticated_ms: int = 0
    """When the user last proved who they are (log in, re-authenticate); 0 when anonymous."""
    auth_level: str = ""
    """How they did (``password``, ``mfa``...), as the application named it; ``""``: unnamed."""
    idle_ms: int = 0
    """A remembered session's own idle timeout; 0 for the configured ``SESSION.EXPIRES``."""
    # The JSON each data key was read (or last saved) as: a save compares against it. Until
    # load_data(), a read record holds the stored values here, possibly sealed (valuecodec).
    raw: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    decoded: bool = field(default=True, compare=False, repr=False)
    """Whether ``data`` holds ``raw`` decoded (false until :meth:`load_data` for a read record)."""
    values: ValueCodec = field(default=PLAIN, compare=False, repr=False)
    """Seals data and metadata on the way to a store and opens them on the way back."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SessionRecord):
            return NotImplemented
        return self._compared() == other._compared()

    __hash__ = None  # type: ignore[assignment]  # mutable, like any dataclass with eq

    def _compared(self) -> tuple[Any, ...]:
        meta = (self.storage_id, self.user_id, self.created_ms, self.last_seen_ms, self.expires_ms)
        auth = (self.authenticated_ms, self.auth_level, self.idle_ms)
        return (*meta, self.absolute_expires_ms, self.user_agent, self.ip, *auth, self.load_data())

    @property
    def remember(self) -> bool:
        """Whether the session was made with "remember me" (it then has its own lifetimes)."""
        return self.idle_ms > 0

    def load_data(self) -> dict[str, Any]:
        """``data``, decoded from ``raw`` on first use; a key that does not parse is dropped."""
        if not self.decoded:
            self.data, self.raw = _decoded(self.raw, self.storage_id, self.values)
            self.decoded = True
        return self.data

    def seal(self, name: str, text: str, *, compress: bool = True) -> str:
        """``text`` as field ``name`` of this session is stored."""
        return self.values.seal(text, session_aad(self.storage_id, name), compress=compress)

    def data_bytes(self) -> int:
        """The size of the data as JSON (keys and values, UTF-8): what ``MAX_BYTES`` caps."""
        data = self.load_data()
        return sum(len(DATA_PREFIX) + _utf8_len(k) + _utf8_len(_dumps(v)) for k, v in data.items())

    def to_fields(self) -> Fields:
        """The flat map a store writes."""
        agent = self.seal(F_USER_AGENT, self.user_agent[:MAX_USER_AGENT], compress=False)
        out: Fields = {
            F_CREATED: str(self.created_ms),
            F_LAST_SEEN: str(self.last_seen_ms),
            F_EXPIRES: str(self.expires_ms),
            F_ABSOLUTE_EXPIRES: str(self.absolute_expires_ms),
            **split(F_USER_AGENT, agent),
            F_IP: self.seal(F_IP, self.ip, compress=False),
        }
        if self.user_id is not None:
            out[F_USER] = self.user_id
        # Written only when set: every byte of a session hash is paid for by every session.
        if self.authenticated_ms:
            out[F_AUTHENTICATED] = str(self.authenticated_ms)
        if self.auth_level:
            out[F_AUTH_LEVEL] = self.auth_level
        if self.idle_ms:
            out[F_IDLE] = str(self.idle_ms)
        for key, value in self.load_data().items():
            out[DATA_PREFIX + key] = self.seal(DATA_PREFIX + key, _dumps(value))
        return out

    @classmethod
    def from_fields(
        cls, storage_id: str, fields: Mapping[str, str], values: ValueCodec = PLAIN
    ) -> SessionRecord:
        """Parse the flat map a store returned (data stays encoded until asked for).

        Fields a store keeps as :class:`StoredFields` (the local cache) are parsed once: a copy
        of that parse is returned, so a cached read costs a copy rather than a parse.
        """
        if isinstance(fields, StoredFields):
            parsed = fields.parsed
            if parsed is None or parsed.storage_id != storage_id or parsed.values is not values:
                parsed = fields.parsed = cls._parse(storage_id, fields, values)
            return parsed._copy()
        return cls._parse(storage_id, fields, values)

    def _copy(self) -> SessionRecord:
        # The instance dict in one C call (a dataclass's own replace() reads its fields one by
        # one); the two mutable members get their own copies.
        copy = object.__new__(SessionRecord)
        copy.__dict__.update(self.__dict__)
        copy.data, copy.raw = dict(self.data), dict(self.raw)
        return copy

    @classmethod
    def _parse(
        cls, storage_id: str, fields: Mapping[str, str], values: ValueCodec
    ) -> SessionRecord:
        n = len(DATA_PREFIX)
        # Interned: cached sessions share their keys' names rather than hold a copy each.
        raw = {intern(name[n:]): text for name, text in fields.items() if name[:n] == DATA_PREFIX}
        agent, ip = joined(F_USER_AGENT, fields), fields.get(F_IP, "")
        if agent[:1] == MARK:
            agent = values.open(agent, session_aad(storage_id, F_USER_AGENT)) or ""
        if ip[:1] == MARK:
            ip = values.open(ip, session_aad(storage_id, F_IP)) or ""
        return cls(
            storage_id=storage_id,
            user_id=fields.get(F_USER),
            created_ms=int(fields.get(F_CREATED, 0)),
            last_seen_ms=int(fields.get(F_LAST_SEEN, 0)),
            expires_ms=int(fields.get(F_EXPIRES, 0)),
            absolute_expires_ms=int(fields.get(F_ABSOLUTE_EXPIRES, 0)),
            user_agent=agent,
            ip=ip,
            authenticated_ms=int(fields.get(F_AUTHENTICATED, 0)),
            auth_level=fields.get(F_AUTH_LEVEL, ""),
            idle_ms=int(fields.get(F_IDLE, 0)),
            raw=raw,
            decoded=not raw,
            values=values,
        )


class StoredFields(dict[str, str]):
    """A session's fields as a store keeps them, never changed in place (a change stores new
    fields), with the record parsed from them (:meth:`SessionRecord.from_fields`)."""

    __slots__ = ("parsed",)

    def __init__(self, fields: Mapping[str, str]) -> None:
        super().__init__(fields)
        self.parsed: SessionRecord | None = None

    def replaced(self, set_fields: Mapping[str, str], delete: Iterable[str]) -> StoredFields:
        """New fields: these without ``delete``, then with ``set_fields``. When only data
        fields change (a save), the parse is carried over, so the next read parses nothing."""
        fields = StoredFields(self)
        for name in delete:
            fields.pop(name, None)
        fields.update(set_fields)
        parsed = self.parsed
        n = len(DATA_PREFIX)
        if parsed is not None and all(
            name[:n] == DATA_PREFIX for names in (delete, set_fields) for name in names
        ):
            carried = fields.parsed = parsed._copy()
            for name in delete:
                carried.raw.pop(name[n:], None)
            for name, text in set_fields.items():
                carried.raw[name[n:]] = text
            carried.decoded = not carried.raw
        return fields


def check_key(key: object) -> None:
    """Raise :class:`DataError` unless ``key`` can name a session value."""
    if not isinstance(key, str):
        raise DataError(f"session keys must be strings, not {type(key).__name__}")
    if not key.isascii():
        try:
            key.encode()
        except UnicodeEncodeError as exc:
            raise DataError(f"session keys must be valid Unicode text: {exc}") from exc


NOT_A_NUMBER = "its value is not a number (store a number there first, or use another key)"
NOT_A_LIST = "its value is not a list (store a list there first, or use another key)"


def incremented(text: str | None, by: int | float) -> str:
    """The JSON number ``text`` plus ``by`` (``modify.lua``'s ``incr``, where it cannot)."""
    current: Any = 0 if text is None else parsed(text)
    if isinstance(current, bool) or not isinstance(current, int | float):
        raise DataError(NOT_A_NUMBER)
    return _dumps(current + by)


def appended(text: str | None, element: str) -> str:
    """The JSON list ``text`` with the encoded ``element`` at its end (``modify.lua``'s
    ``append``, where it cannot)."""
    if text is None or text == "[]":
        return f"[{element}]"
    if text[:1] != "[" or text[-1:] != "]":
        raise DataError(NOT_A_LIST)
    return f"{text[:-1]},{element}]"


def slid_expiry(now_ms: int, idle_ms: int, absolute_expires_ms: int) -> int:
    """The new idle expiry after activity at ``now_ms``: never past the absolute lifetime."""
    return min(now_ms + idle_ms, absolute_expires_ms)


@dataclass(frozen=True)
class Delta:
    """What a save must write: data fields to set (already encoded) and data fields to delete."""

    set: Fields
    delete: tuple[str, ...]
    texts: Mapping[str, str] = field(default_factory=dict)
    """The JSON of every data key after the save, by key: what the store then holds."""

    def __bool__(self) -> bool:
        return bool(self.set or self.delete)

    def data_bytes(self) -> int:
        """The size of the data after the save, as :meth:`SessionRecord.data_bytes` counts it."""
        texts = self.texts  # joined first: one length each instead of two per key
        keys, values = "".join(texts), "".join(texts.values())
        return len(DATA_PREFIX) * len(texts) + _utf8_len(keys) + _utf8_len(values)


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
        self.reissued_cookie: str | None = None
        """A cookie value the client must be sent: the session moved to the current
        ``SECRET_KEY`` when it was opened with a cookie of a former one."""
        # What the app sees, decoded on first use (see _values()); what the store holds stays in
        # the record: ``record.data`` and its encodings ``record.raw``.
        self._data: dict[str, Any] | None = None

    def _values(self) -> dict[str, Any]:
        data = self._data
        if data is None:
            data = {}
            self.adopt(data)
        return data

    def adopt(self, view: dict[str, Any]) -> None:
        """Make ``view`` (emptied, then filled with the stored data) the session's live data.

        An adapter whose session must be a real ``dict`` passes itself: the values then live in
        one place, and :meth:`delta` still finds what changed by comparing with the record.
        """
        if view is self._data:
            return
        if self._data is not None:
            data = self._data
        else:
            record = self.record
            data = record.load_data()
            if data and not record.raw:  # made in this process, never read from a store
                record.raw = {k: _dumps(v) for k, v in data.items()}
        # dict's own methods: a subclass passed as ``view`` may count these calls as access.
        dict.clear(view)
        dict.update(view, data)
        self._data = view

    @property
    def storage_id(self) -> str:
        """The storage id (keyed hash of the token); never the token itself."""
        return self.record.storage_id

    @property
    def user_id(self) -> str | None:
        """The user the session is bound to, or ``None`` for an anonymous session."""
        return self.record.user_id

    @property
    def modified(self) -> bool:
        """Whether the data differs from what the store holds."""
        return bool(self.delta())

    @property
    def emptied(self) -> bool:
        """Whether the data was looked at and is now empty while the store still holds some:
        ``modified and not len(session)``, without computing the whole delta."""
        data = self._data
        return data is not None and not dict.__len__(data) and bool(self.record.raw)

    def __getitem__(self, key: str) -> Any:
        return self._values()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        check_item(key, value)
        self._values()[key] = value

    def stored(self, key: str, text: str) -> Any:
        """Take ``text``, which the store now holds for ``key`` (an atomic change), as both the
        value and what was saved: a later save writes nothing for ``key``."""
        value = parsed(text)
        record = self.record
        if record.decoded:
            record.data[key] = value
        record.raw[key] = _dumps(value)  # what a save compares with, in its own encoding
        if self._data is not None:
            # dict's own method: an adapter's view counts its own calls as changes to save.
            dict.__setitem__(self._data, key, value)
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
        record = self.record
        loaded, saved = record.data, record.raw  # _data began as a copy of loaded
        changed: Fields = {}
        texts: dict[str, str] = {}
        # dict's own methods: an adapter's view (see adopt) counts its own as access.
        for key, value in dict.items(self._data):
            if type(value) in _IMMUTABLE and value is loaded.get(key, _ABSENT):
                # The very object that was saved, and it cannot have changed in place.
                encoded = saved.get(key) or _dumps(value)
            else:
                encoded = _dumps(value)
                if saved.get(key) != encoded:
                    changed[DATA_PREFIX + key] = record.seal(DATA_PREFIX + key, encoded)
            texts[key] = encoded
        removed = tuple(DATA_PREFIX + k for k in saved if k not in texts)
        return Delta(changed, removed, texts)

    def mark_saved(self, delta: Delta) -> None:
        """Take the data as what the store holds, after ``delta`` was saved: its JSON becomes
        what later saves compare with (nothing is encoded again)."""
        self.new = False
        if self._data is None or delta is NO_CHANGE:  # no data written: the record holds
            return
        self.record.data = dict(dict.items(self._data))
        self.record.raw = dict(delta.texts)

    def __repr__(self) -> str:
        return f"<Session {self.storage_id[:8]}... user={self.user_id!r} keys={len(self)}>"
