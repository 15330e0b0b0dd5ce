"""Re-authentication (ASVS V7.5): is the session's login recent enough, and strong enough?

Each session records when its user last authenticated (``t``) and how (``v``, a level the
application names). A sensitive action asks :func:`require_fresh`; a session that fails gets
:class:`~sessionhub.exceptions.ReauthRequiredError`, which every adapter answers with a 401 whose
body says ``reauth_required`` and why. Levels are ordered weakest first (``AUTH.LEVELS``): a
session at a level listed at or after the one required passes; an unnamed or unknown level
passes only when no level is required.
"""

from __future__ import annotations

from collections.abc import Sequence

from .exceptions import InvalidInputError, ReauthRequiredError
from .session import SessionRecord


def require_fresh(
    record: SessionRecord,
    max_age: int,
    level: str | None,
    *,
    now_ms: int,
    levels: Sequence[str],
) -> None:
    """Raise :class:`ReauthRequiredError` unless ``record``'s user authenticated within
    ``max_age`` seconds of ``now_ms``, at ``level`` or stronger when given."""
    if level is not None and level not in levels:
        raise InvalidInputError(f"unknown authentication level {level!r} (AUTH.LEVELS: {levels})")
    if record.user_id is None or not record.authenticated_ms:
        raise ReauthRequiredError("not_authenticated", "log in first", max_age=max_age, level=level)
    if now_ms - record.authenticated_ms > max_age * 1000:
        raise ReauthRequiredError(
            "stale",
            f"authenticate again: this needs a login within the last {max_age} s",
            max_age=max_age,
            level=level,
        )
    if level is not None:
        have = levels.index(record.auth_level) if record.auth_level in levels else -1
        if have < levels.index(level):
            raise ReauthRequiredError(
                "level",
                f"authenticate again with {level}: this session was authenticated with "
                f"{record.auth_level or 'an unnamed level'}",
                max_age=max_age,
                level=level,
            )
