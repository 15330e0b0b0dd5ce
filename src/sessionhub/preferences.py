"""Per-user settings ("preferences"): a validated document that belongs to the user, not a session.

Redis: ``P{u:<user>}:settings`` holds the user's document as one JSON string. Only values the
user set are stored; reads merge them over the defaults. ``PUT`` replaces the stored document,
``PATCH`` merges into it (``custom`` is merged key by key; a ``null`` removes a custom key or resets
a built-in key to its default). Each write is a read, a merge, a validation of the *result* and a
compare-and-set, retried if another writer got in between, so concurrent patches never lose keys
and an invalid request changes nothing.

Degraded mode: every document this process reads or writes is mirrored in memory, as Redis holds
it (sealed by the value codec: encrypted under ``ENCRYPTION.KEYS``). While Redis is down, reads
are served from the mirror (defaults for a user this process has never seen) and writes go to
the mirror and are queued; on recovery the queued documents are written to Redis (last writer
wins) before traffic returns to Redis.
"""

from __future__ import annotations

import json
import re
import threading
import zoneinfo
from collections.abc import Mapping
from typing import Any

from .exceptions import ConflictError, InvalidPreferencesError
from .jsontext import canonical
from .stores.base import CommandCall, LuaScript, Op, ScriptCall, send
from .stores.resilient import USE_MEMORY, ResilientCore
from .stores.userkeys import UserKeys
from .valuecodec import PLAIN, ValueCodec, user_aad
from .views import Settings

CAS = LuaScript.load("cas")

DEFAULTS: dict[str, Any] = {
    "theme": "system",
    "language": "en",
    "timezone": "UTC",
    "notifications": True,
    "custom": {},
}
THEMES = ("light", "dark", "system")
MAX_CUSTOM_KEY = 64
MAX_CUSTOM_DEPTH = 32
"""Nesting allowed under ``custom``: far deeper would exhaust the JSON codecs' recursion."""
CAS_ATTEMPTS = 20
FIELD = "settings"
"""The field name in a settings document's associated data (see :mod:`.valuecodec`)."""
# BCP 47 (RFC 5646) language tags, well-formed: language, extlang, script, region, variants,
# extensions and private use; or a private-use-only tag.
_BCP47 = re.compile(
    r"^(?:(?:[A-Za-z]{2,3}(?:-[A-Za-z]{3}){0,3}|[A-Za-z]{4,8})"
    r"(?:-[A-Za-z]{4})?"
    r"(?:-(?:[A-Za-z]{2}|[0-9]{3}))?"
    r"(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*"
    r"(?:-[0-9A-WY-Za-wy-z](?:-[A-Za-z0-9]{2,8})+)*"
    r"(?:-[Xx](?:-[A-Za-z0-9]{1,8})+)?"
    r"|[Xx](?:-[A-Za-z0-9]{1,8})+)$"
)
_TIMEZONES = frozenset(zoneinfo.available_timezones())


def _deeper_than(value: Any, limit: int) -> bool:
    # A loop, not recursion: the value may be nested deeper than Python's stack allows.
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _json_size(value: Any) -> int | None:
    """Bytes of ``value`` as stored JSON; ``None`` when it cannot be stored: not JSON (NaN, an
    object), nested too deep, or text UTF-8 cannot carry (a lone surrogate from ``"\\ud800"``)."""
    if _deeper_than(value, MAX_CUSTOM_DEPTH):
        return None
    try:
        return len(canonical(value).encode())
    except (TypeError, ValueError):  # UnicodeEncodeError and the int/str digit limit included
        return None


def _shown(key: str) -> str:
    """A key from the request as an error may name it: always encodable as UTF-8."""
    return key.encode("utf-8", "backslashreplace").decode()


class PreferencesOps:
    """Read, replace and patch a user's settings (I/O-free operations)."""

    def __init__(
        self,
        core: ResilientCore,
        keys: UserKeys,
        *,
        max_custom_bytes: int = 8192,
        max_custom_keys: int = 64,
        values: ValueCodec = PLAIN,
    ) -> None:
        self.core = core
        self.keys = keys
        self.values = values
        self.max_custom_bytes = max_custom_bytes
        self.max_custom_keys = max_custom_keys
        self._lock = threading.Lock()
        self._mirror: dict[str, str] = {}  # user -> the document as stored (sealed)
        self._pending: dict[str, int] = {}  # user -> change counter, written on recovery
        core.recovery_hooks.append(self.flush)

    # -- validation ----------------------------------------------------------------------------

    def validate(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Check a stored document (the keys a user set); raises InvalidPreferencesError."""
        errors: dict[str, str] = {}
        for key in doc:
            if key not in DEFAULTS:
                errors[_shown(key)] = f"unknown setting (allowed: {', '.join(DEFAULTS)})"
        if "theme" in doc and doc["theme"] not in THEMES:
            errors["theme"] = f"must be one of {', '.join(THEMES)}"
        if "language" in doc:
            lang = doc["language"]
            if not isinstance(lang, str) or len(lang) > 35 or not _BCP47.fullmatch(lang):
                errors["language"] = "must be a BCP 47 language tag such as en, zh-CN or pt-BR"
        if "timezone" in doc:
            tz = doc["timezone"]
            if not isinstance(tz, str) or tz not in _TIMEZONES:
                errors["timezone"] = "must be an IANA time zone name such as Europe/Paris or UTC"
        if "notifications" in doc and not isinstance(doc["notifications"], bool):
            errors["notifications"] = "must be true or false"
        if "custom" in doc:
            custom = doc["custom"]
            if not isinstance(custom, dict):
                errors["custom"] = "must be an object"
            else:
                bad_keys = [
                    k for k in custom if not isinstance(k, str) or not 1 <= len(k) <= MAX_CUSTOM_KEY
                ]
                size = None if bad_keys else _json_size(custom)
                if bad_keys:
                    errors["custom"] = f"keys must be 1 to {MAX_CUSTOM_KEY} characters long"
                elif len(custom) > self.max_custom_keys:
                    errors["custom"] = f"at most {self.max_custom_keys} keys"
                elif size is None:
                    errors["custom"] = (
                        "must hold only JSON values (finite numbers, valid Unicode text), "
                        f"nested at most {MAX_CUSTOM_DEPTH} deep"
                    )
                elif size > self.max_custom_bytes:
                    errors["custom"] = f"at most {self.max_custom_bytes} bytes of JSON"
        if errors:
            raise InvalidPreferencesError(errors)
        return doc

    @staticmethod
    def view(stored: dict[str, Any]) -> Settings:
        """The full settings: stored values over the defaults."""
        out = {**DEFAULTS, **stored}
        out["custom"] = dict(stored.get("custom", {}))
        return out

    @staticmethod
    def _merge(stored: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
        merged = dict(stored)
        for key, value in patch.items():
            if key == "custom" and isinstance(value, dict):
                custom = dict(merged.get("custom", {}))
                for ck, cv in value.items():
                    if cv is None:
                        custom.pop(ck, None)
                    else:
                        custom[ck] = cv
                merged["custom"] = custom
            elif value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        if not merged.get("custom", True):
            merged.pop("custom", None)
        return merged

    # -- operations ----------------------------------------------------------------------------

    def get(self, user_id: str) -> Op[Settings]:
        """The user's settings, defaults filled in."""
        _, stored = yield from self._read(user_id)
        return self.view(stored)

    def replace(self, user_id: str, doc: Mapping[str, object]) -> Op[Settings]:
        """Replace the settings with ``doc`` (missing keys return to their defaults)."""
        if not isinstance(doc, Mapping):
            raise InvalidPreferencesError({"body": "must be a JSON object"})
        new = self.validate({k: v for k, v in doc.items() if v is not None})
        return (yield from self._write(user_id, lambda _: new))

    def patch(self, user_id: str, patch: Mapping[str, object]) -> Op[Settings]:
        """Merge ``patch`` into the settings; ``null`` resets a key (or removes a custom key)."""
        if not isinstance(patch, Mapping):
            raise InvalidPreferencesError({"body": "must be a JSON object"})
        if (
            "custom" in patch
            and patch["custom"] is not None
            and not isinstance(patch["custom"], dict)
        ):
            raise InvalidPreferencesError({"custom": "must be an object"})
        self.validate({k: v for k, v in patch.items() if v is not None and k != "custom"})
        return (yield from self._write(user_id, lambda stored: self._merge(stored, patch)))

    def _read(self, user_id: str) -> Op[tuple[str | None, dict[str, Any]]]:
        """``(raw JSON in Redis or None, stored document)``; from the mirror while degraded."""
        raw = yield from self.core.on_redis(send(CommandCall(("GET", self.keys.settings(user_id)))))
        if raw is USE_MEMORY:
            with self._lock:
                kept = self._mirror.get(user_id, "")
            return None, self._open(user_id, kept)
        kept = raw or ""
        stored = self._open(user_id, kept)
        if kept and not self.values.is_current(kept):  # else kept as Redis holds it, no re-seal
            kept = self._seal(user_id, stored)
        with self._lock:
            if user_id not in self._pending:
                self._mirror[user_id] = kept
        return raw, stored

    def _write(self, user_id: str, change: Any) -> Op[Settings]:
        for _ in range(CAS_ATTEMPTS):
            raw, stored = yield from self._read(user_id)
            new = self.validate(change(stored))
            sealed = self._seal(user_id, new)
            written = yield from self.core.on_redis(
                send(ScriptCall(CAS, (self.keys.settings(user_id),), (raw or "", sealed)))
            )
            if written is USE_MEMORY:
                self._keep(user_id, sealed, pending=self.core.has_redis)
                return self.view(new)
            if written:
                self._keep(user_id, sealed, pending=False)
                return self.view(new)
        raise ConflictError("settings changed concurrently too often; try again")

    def _keep(self, user_id: str, sealed: str, *, pending: bool) -> None:
        with self._lock:
            self._mirror[user_id] = sealed
            if pending:
                self._pending[user_id] = self._pending.get(user_id, 0) + 1
            else:
                self._pending.pop(user_id, None)

    def _seal(self, user_id: str, doc: dict[str, Any]) -> str:
        return self.values.seal(canonical(doc), user_aad(user_id, FIELD), compress=False)

    def _open(self, user_id: str, stored: str) -> dict[str, Any]:
        return _loads(stored and self.values.open(stored, user_aad(user_id, FIELD)))

    def flush(self) -> Op[bool]:
        """Recovery hook: write the documents changed while Redis was down."""
        with self._lock:
            batch = {u: (v, self._mirror.get(u, "")) for u, v in self._pending.items()}
        for user_id, (version, sealed) in batch.items():
            yield CommandCall(("SET", self.keys.settings(user_id), sealed))
            with self._lock:
                if self._pending.get(user_id) == version:
                    del self._pending[user_id]
        with self._lock:
            return not self._pending


def _loads(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
