"""How a value is stored: as is, compressed, or encrypted, told apart by a short prefix.

Every stored value that may hold a user's data goes through one :class:`ValueCodec`: session
data (``d:<key>``), a session's user agent and IP, settings documents and message bodies. A
value written before this codec existed has no prefix and reads back unchanged, so turning
compression or encryption on never makes old data unreadable. Formats (``MARK`` is ``\\x1e``,
which no JSON text and no HTTP header value begins with)::

    <text>                   the text itself (it does not begin with MARK)
    MARK j <text>            the text itself, when it happens to begin with MARK
    MARK z <base64>          zlib-compressed UTF-8
    MARK s <base64>          zstd-compressed UTF-8
    MARK e <key id> : <base64(nonce || AES-256-GCM(kind || payload))>
                             encrypted; kind is j, z or s as above, before encryption

The associated data of an encrypted value is the id of what owns it (a session's storage id, a
user id) and the field name, so a ciphertext copied to another session, user or field fails
authentication instead of decrypting there.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
import zlib
from collections.abc import Sequence
from typing import Any, Protocol

from .exceptions import ConfigError

log = logging.getLogger("sessionhub.values")

MARK = "\x1e"
ENCRYPTION_EXTRA = "pip install 'sessionhub[encryption]'"
NONCE_BYTES = 12
KEY_BYTES = 32


class _Compressor(Protocol):
    kind: str

    def compress(self, data: bytes) -> bytes: ...
    def decompress(self, data: bytes) -> bytes: ...


class _Zlib:
    kind = "z"

    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data, 6)

    def decompress(self, data: bytes) -> bytes:
        return zlib.decompress(data)


class _Zstd:
    kind = "s"

    def __init__(self) -> None:
        import zstandard  # the zstd extra; checked by best_compressor()

        self._c = zstandard.ZstdCompressor(level=3)
        self._d = zstandard.ZstdDecompressor()
        # zstandard's objects are not thread-safe: two threads decompressing at once through one
        # fail ("destination buffer is too small"), and the value would read as missing.
        self._lock = threading.Lock()

    def compress(self, data: bytes) -> bytes:
        with self._lock:
            return self._c.compress(data)

    def decompress(self, data: bytes) -> bytes:
        with self._lock:
            return self._d.decompress(data)


def best_compressor() -> _Compressor:
    """zstd when the ``zstandard`` package is installed, else zlib."""
    try:
        return _Zstd()
    except ImportError:
        return _Zlib()


def parse_key(key_id: str, key_b64: str) -> bytes:
    """The 32 bytes an ``ENCRYPTION.KEYS`` entry holds; ``ValueError`` naming what is wrong."""
    try:
        raw = base64.b64decode(key_b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise ValueError(
            f"key {key_id!r} must be {KEY_BYTES} random bytes in base64 "
            "(e.g. from `sessionhub keys new`)"
        )
    return raw


class ValueCodec:
    """Seals values for storage and opens them again; see the module docstring for formats.

    ``keys`` are ``(id, 32-byte key)`` pairs: the first encrypts, every one decrypts; none means
    no encryption. Texts longer than ``compress_threshold`` UTF-8 bytes are compressed where the
    caller allows it (0: never).
    """

    def __init__(
        self,
        keys: Sequence[tuple[str, bytes]] = (),
        *,
        compress_threshold: int = 0,
        compressor: _Compressor | None = None,
    ) -> None:
        self.key_ids = tuple(key_id for key_id, _ in keys)
        self._ciphers: dict[str, Any] = {}
        if keys:
            try:
                from cryptography.hazmat.primitives.ciphers.aead import AESGCM
            except ImportError:
                raise ConfigError(
                    "ENCRYPTION.KEYS needs the encryption extra (cryptography is not installed): "
                    + ENCRYPTION_EXTRA
                ) from None
            self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}
        self.compress_threshold = compress_threshold
        self._compressor = compressor or (best_compressor() if compress_threshold else _Zlib())
        self._decompressors: dict[str, _Compressor] = {self._compressor.kind: self._compressor}
        self.active = bool(keys or compress_threshold)
        """Whether :meth:`seal` may change a value (otherwise it returns texts as they are)."""
        self._current_prefix = f"{MARK}e{self.key_ids[0]}:" if keys else None
        self._lock = threading.Lock()
        self.unlisted = 0
        """Values met under a key id that ``ENCRYPTION.KEYS`` no longer lists."""
        self.rejected = 0
        """Encrypted values that failed authentication (moved, altered) or did not decode."""
        self._warned: set[str] = set()

    # -- writing -------------------------------------------------------------------------------

    def seal(self, text: str, aad: str, *, compress: bool = True) -> str:
        """``text`` as it is stored; ``aad`` names its owner and field (see the module).

        The empty text is stored as it is: sealed, it cost 45 bytes in every session without a
        user agent or IP and hid nothing a ciphertext's length does not tell.
        """
        if not self.active or not text:
            return text if text[:1] != MARK else MARK + "j" + text
        data = text.encode()
        kind = "j"
        if compress and self.compress_threshold and len(data) > self.compress_threshold:
            packed = self._compressor.compress(data)
            if len(packed) < len(data):
                data, kind = packed, self._compressor.kind
        if self._current_prefix is not None:
            key_id = self.key_ids[0]
            nonce = os.urandom(NONCE_BYTES)
            sealed = self._ciphers[key_id].encrypt(nonce, kind.encode() + data, aad.encode())
            return self._current_prefix + base64.b64encode(nonce + sealed).decode()
        if kind == "j":
            return text if text[:1] != MARK else MARK + "j" + text
        return MARK + kind + base64.b64encode(data).decode()

    # -- reading -------------------------------------------------------------------------------

    def open(self, stored: str, aad: str) -> str | None:
        """The text ``stored`` holds, or ``None`` when it cannot be read (reported, counted)."""
        if stored[:1] != MARK:
            return stored
        kind = stored[1:2]
        if kind == "j":
            return stored[2:]
        try:
            if kind == "e":
                key_id, sep, payload = stored[2:].partition(":")
                cipher = self._ciphers.get(key_id)
                if not sep or cipher is None:
                    self._unlisted(key_id)
                    return None
                raw = base64.b64decode(payload)
                plain = cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad.encode())
                kind, data = chr(plain[0]), plain[1:]
                if kind == "j":
                    return str(data.decode())
            else:
                data = base64.b64decode(stored[2:])
            return self._decompressor(kind).decompress(data).decode()
        except Exception:
            # Any failure means "not readable here": a failed authentication (InvalidTag), bad
            # base64, a zstd value on a host without zstandard, truncated data.
            self._rejected()
            return None

    def _decompressor(self, kind: str) -> _Compressor:
        # Compression may have been switched off or changed since: every kind stays readable.
        found = self._decompressors.get(kind)
        if found is None:
            found = _Zlib() if kind == "z" else _Zstd() if kind == "s" else None
            if found is None:
                raise ValueError(f"unknown stored value kind {kind!r}")
            self._decompressors[kind] = found
        return found

    def key_id(self, stored: str) -> str | None:
        """The id of the key ``stored`` is encrypted under, or ``None`` when not encrypted."""
        if stored[:2] != MARK + "e":
            return None
        return stored[2:].partition(":")[0]

    def is_current(self, stored: str) -> bool:
        """Whether ``stored`` is already as :meth:`seal` writes it now (key-wise)."""
        if self._current_prefix is None or not stored:
            return self.key_id(stored) is None
        return stored.startswith(self._current_prefix)

    def _unlisted(self, key_id: str) -> None:
        with self._lock:
            self.unlisted += 1
            first = key_id not in self._warned
            self._warned.add(key_id)
        if first:
            log.warning(
                "A value is encrypted under key %r, which ENCRYPTION.KEYS no longer lists: it "
                "is treated as missing (add the key back, or run `sessionhub keys rotate` "
                "before removing a key)",
                key_id[:16],
            )

    def _rejected(self) -> None:
        with self._lock:
            self.rejected += 1
            first = "" not in self._warned
            self._warned.add("")
        if first:
            log.warning(
                "A stored value could not be decrypted or decoded (moved to another owner, "
                "altered, or compressed with zstd on a host without it): treated as missing"
            )


PLAIN = ValueCodec()
"""Neither compression nor encryption: values are stored as they are."""


def session_aad(storage_id: str, field: str) -> str:
    """Associated data of a session field: the session's storage id and the field's name."""
    return f"s\x00{storage_id}\x00{field}"


def user_aad(user_id: str, field: str) -> str:
    """Associated data of a per-user value (settings, message bodies)."""
    return f"u\x00{user_id}\x00{field}"
