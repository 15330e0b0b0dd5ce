"""Session tokens: generation, cookie signing, and the keyed hash under which Redis stores them.

A raw token only ever lives in the client's cookie. Stores see the *storage id*, an HMAC of the
token under a key derived from ``SECRET_KEY``, so a copy of Redis cannot be replayed as cookies.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from collections.abc import Sequence

from .exceptions import InvalidTokenError

TOKEN_BYTES = 32
"""256 bits from :mod:`secrets`."""

_TOKEN_LEN = 43  # len(token_urlsafe(32)) without padding
_SIG_LEN = 43
_TOKEN_RE = re.compile(rf"[A-Za-z0-9_-]{{{_TOKEN_LEN}}}")
_STORAGE_ID_RE = re.compile(r"[0-9a-f]{32}")
MAX_COOKIE_LEN = 256
"""Anything longer is rejected before any hashing work."""


def _derive(secret: bytes, label: str) -> bytes:
    # Separate keys per purpose, so a signature can never double as a storage id.
    return hmac.digest(secret, b"sessionhub/v1/" + label.encode(), "sha256")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def short(storage_id: str) -> str:
    """The form of a storage id that may appear in logs: its first 8 characters and ``...``."""
    return storage_id[:8] + "..."


def is_storage_id(value: str) -> bool:
    """Whether ``value`` has the shape of a storage id (32 lowercase hex characters)."""
    return bool(_STORAGE_ID_RE.fullmatch(value))


class TokenCodec:
    """Creates tokens, turns them into cookie values and back, and derives their storage ids."""

    def __init__(
        self, secret: bytes, *, use_signer: bool = True, fallbacks: Sequence[bytes] = ()
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the secret must be at least 16 bytes")
        self.use_signer = use_signer
        self._sign_key = _derive(secret, "cookie-signature")
        self._hash_key = _derive(secret, "storage-id")
        self._handle_key = _derive(secret, "public-handle")
        self._address_key = _derive(secret, "client-address")
        # SECRET_KEY_FALLBACKS: former secrets whose cookies and storage ids are still accepted.
        self._old_sign_keys = tuple(_derive(old, "cookie-signature") for old in fallbacks)
        self._old_hash_keys = tuple(_derive(old, "storage-id") for old in fallbacks)

    def new_token(self) -> str:
        """A fresh 256-bit token."""
        return secrets.token_urlsafe(TOKEN_BYTES)

    # hmac.digest is OpenSSL's one-shot path: two HMACs run on every request, and hmac.new
    # costs about 1.3 us more each (measured).
    def _signature(self, token: str) -> str:
        return _b64(hmac.digest(self._sign_key, token.encode(), "sha256"))

    def cookie_value(self, token: str) -> str:
        """The cookie that carries ``token``: signed with HMAC-SHA256 when the signer is on."""
        return f"{token}.{self._signature(token)}" if self.use_signer else token

    def token_from_cookie(self, value: str) -> str:
        """The token inside a cookie value; :class:`.InvalidTokenError` when it is not ours."""
        if len(value) > MAX_COOKIE_LEN:
            raise InvalidTokenError("session cookie is too long")
        if self.use_signer:
            token, dot, sig = value.partition(".")
            # Non-ASCII text cannot be a signature, and a lone surrogate would not even encode.
            if not dot or len(sig) != _SIG_LEN or not sig.isascii():
                raise InvalidTokenError("session cookie is malformed")
            if not _TOKEN_RE.fullmatch(token):
                raise InvalidTokenError("session cookie is malformed")
            if not hmac.compare_digest(sig, self._signature(token)) and not any(
                hmac.compare_digest(sig, _b64(hmac.digest(key, token.encode(), "sha256")))
                for key in self._old_sign_keys
            ):
                raise InvalidTokenError("session cookie signature does not match")
            return token
        if not _TOKEN_RE.fullmatch(value):
            raise InvalidTokenError("session cookie is malformed")
        return value

    def storage_id(self, token: str) -> str:
        """The keyed hash of ``token`` that stores use as its id (128 bits, hex)."""
        return hmac.digest(self._hash_key, token.encode(), "sha256").hex()[:32]

    @property
    def has_fallbacks(self) -> bool:
        """Whether former secrets are configured (``SECRET_KEY_FALLBACKS``)."""
        return bool(self._old_hash_keys)

    def fallback_storage_ids(self, token: str) -> list[str]:
        """The storage ids ``token`` had under each former secret, newest first."""
        return [hmac.digest(k, token.encode(), "sha256").hex()[:32] for k in self._old_hash_keys]

    def address_id(self, address: str) -> str:
        """The keyed hash of a client address that the login throttle counts under (128 bits,
        hex): like a token, an address is never at rest in clear, in Redis or in memory."""
        raw = address.encode("utf-8", "surrogatepass")
        return hmac.digest(self._address_key, raw, "sha256").hex()[:32]

    def handle(self, storage_id: str) -> str:
        """An opaque public id for a session, safe to show users; it cannot be used as a cookie."""
        return hmac.digest(self._handle_key, storage_id.encode(), "sha256").hex()[:20]
