"""Message ids: Redis stream ids ``<ms>-<seq>``, each part an unsigned 64-bit integer."""

from __future__ import annotations

from ..exceptions import InvalidCursorError

MAX_ID_PART = 2**64 - 1
"""Redis refuses a larger part: checked here so a hostile id never reaches Redis."""

NO_ID = (-1, -1)


def id_key(message_id: str) -> tuple[int, int]:
    """A stream id as a sortable pair; :data:`NO_ID` for anything else, out-of-range parts too."""
    ms, sep, seq = message_id.partition("-")
    digits = ms + seq
    if not sep or not (0 < len(ms) <= 20 and 0 < len(seq) <= 20):
        return NO_ID
    if not (digits.isascii() and digits.isdigit()):
        return NO_ID
    pair = int(ms), int(seq)
    return pair if max(pair) <= MAX_ID_PART else NO_ID


def valid_id(message_id: str) -> bool:
    """Whether ``message_id`` is a stream id Redis accepts."""
    return id_key(message_id) != NO_ID


def check_ids(*ids: str, what: str = "message ids") -> None:
    """Raise :class:`InvalidCursorError` naming the ids that are not stream ids."""
    bad = [i for i in ids if not valid_id(i)]
    if bad:
        shown = ", ".join(repr(i[:40]) for i in bad[:5])
        raise InvalidCursorError(
            f"not {what}: {shown}; a message id looks like 1700000000000-0, "
            f"each part at most {MAX_ID_PART}"
        )
