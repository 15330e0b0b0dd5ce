"""Who is asking: password checks for users, bearer keys for operators."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterable
from pathlib import Path

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from starlette.requests import Request

from ..config import UserEntry, load_settings
from ..exceptions import ConfigError
from .errors import ApiError

log = logging.getLogger("sessionhub.service")

ADMIN_COOKIE = "sessionhub_admin"
ADMIN_COOKIE_SECONDS = 8 * 3600


def hash_password(password: str) -> str:
    """An argon2id PHC string with argon2-cffi's default (RFC 9106 low-memory) parameters."""
    return argon2.PasswordHasher().hash(password)


class PasswordChecker:
    """Checks credentials in the same time whether or not the user exists.

    With ``users_file``, users added to that config file (``sessionhub users add``) can log in
    without a restart: the file is read again when its modification time changes.
    """

    def __init__(self, users: Iterable[UserEntry], users_file: Path | None = None) -> None:
        self._hashes = {u.username: u.password_hash.get_secret_value() for u in users}
        self._file = users_file
        self._stamp = self._file_stamp()
        # An unknown user is checked against a hash with the same parameters as a real one, so
        # the response time does not tell whether a username exists.
        sample = next(iter(self._hashes.values()), None)
        params = argon2.extract_parameters(sample) if sample else None
        hasher = (
            argon2.PasswordHasher.from_parameters(params) if params else argon2.PasswordHasher()
        )
        self._dummy = hasher.hash("sessionhub-timing-equaliser")
        self._verifier = argon2.PasswordHasher()

    def check(self, username: str, password: str) -> bool:
        """Whether ``password`` is right for ``username`` (blocking: argon2 is CPU-bound)."""
        self.refresh()
        stored = self._hashes.get(username)
        try:
            self._verifier.verify(stored or self._dummy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return stored is not None

    def knows(self, username: str) -> bool:
        """Whether ``username`` is a user, counting those added to the file since the start."""
        self.refresh()
        return username in self._hashes

    def _file_stamp(self) -> int | None:
        try:
            return None if self._file is None else self._file.stat().st_mtime_ns
        except OSError:
            return None

    def refresh(self) -> None:
        """Read the users again if the config file changed; a broken file keeps the old ones."""
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            users = load_settings(self._file).users
        except ConfigError as exc:
            log.warning("Users not reloaded, the config file has a problem: %s", exc)
            return
        self._hashes = {u.username: u.password_hash.get_secret_value() for u in users}
        log.info("Users reloaded from %s: %d user(s)", self._file, len(self._hashes))


def bearer_key(request: Request) -> str | None:
    """The key in ``Authorization: Bearer <key>``, if any."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def admin_key_valid(given: str, keys: Iterable[str]) -> bool:
    """Whether ``given`` is one of ``keys``, compared with every key without stopping early, so
    timing reveals nothing."""
    match = False
    for key in keys:
        match |= hmac.compare_digest(given.encode(), key.encode())
    return match


def require_admin(request: Request, keys: Iterable[str]) -> None:
    """Raise 401/403 unless the request carries one of the operator keys, as a bearer key or
    as the admin page's cookie (:func:`admin_cookie`)."""
    keys = list(keys)
    given = bearer_key(request)
    if given is None:
        if admin_cookie_valid(request.cookies.get(ADMIN_COOKIE, ""), keys):
            return
        raise ApiError(401, "admin_key_required", "this endpoint needs Authorization: Bearer <key>")
    if not admin_key_valid(given, keys):
        raise ApiError(403, "admin_key_invalid", "the admin key is not valid")


def _cookie_signature(key: str, expires: str) -> str:
    return hmac.new(key.encode(), f"sessionhub-admin:{expires}".encode(), "sha256").hexdigest()


def admin_cookie(key: str, now: float | None = None) -> str:
    """The admin page's cookie for a valid ``key``: its expiry, signed with that key.

    Not the key itself, so the cookie stops working at its expiry, and signed with the key so
    that removing a key from ``ADMIN.API_KEYS`` logs out the pages that used it, with no
    server-side state to share between instances.
    """
    expires = str(int(now if now is not None else time.time()) + ADMIN_COOKIE_SECONDS)
    return f"{expires}.{_cookie_signature(key, expires)}"


def admin_cookie_valid(cookie: str, keys: Iterable[str], now: float | None = None) -> bool:
    """Whether ``cookie`` was made by :func:`admin_cookie` under one of ``keys`` and is live."""
    expires, _, signature = cookie.partition(".")
    if not (expires.isascii() and expires.isdigit() and len(expires) <= 12):
        return False
    if int(expires) <= (now if now is not None else time.time()):
        return False
    return admin_key_valid(signature, (_cookie_signature(key, expires) for key in keys))
