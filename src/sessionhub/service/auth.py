"""Who is asking: password checks for users, bearer keys for operators."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from starlette.requests import Request

from ..config import UserEntry
from .errors import ApiError


def hash_password(password: str) -> str:
    """An argon2id PHC string with argon2-cffi's default (RFC 9106 low-memory) parameters."""
    return argon2.PasswordHasher().hash(password)


class PasswordChecker:
    """Checks credentials in the same time whether or not the user exists."""

    def __init__(self, users: Iterable[UserEntry]) -> None:
        self._hashes = {u.username: u.password_hash.get_secret_value() for u in users}
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
        stored = self._hashes.get(username)
        try:
            self._verifier.verify(stored or self._dummy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return stored is not None


def bearer_key(request: Request) -> str | None:
    """The key in ``Authorization: Bearer <key>``, if any."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def require_admin(request: Request, keys: Iterable[str]) -> None:
    """Raise 401/403 unless the request carries one of the operator keys."""
    given = bearer_key(request)
    if given is None:
        raise ApiError(401, "admin_key_required", "this endpoint needs Authorization: Bearer <key>")
    # Compare against every key without stopping early, so timing reveals nothing.
    match = False
    for key in keys:
        match |= hmac.compare_digest(given.encode(), key.encode())
    if not match:
        raise ApiError(403, "admin_key_invalid", "the admin key is not valid")
