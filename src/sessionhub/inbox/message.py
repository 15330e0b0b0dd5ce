"""One inbox message: what readers see, how it is stored in a stream entry, what a body may be."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..exceptions import InvalidMessageError
from ..jsontext import compact
from ..timefmt import iso
from ..valuecodec import PLAIN, ValueCodec, user_aad
from ..views import JSON, MessageView


@dataclass
class Message:
    """One inbox entry."""

    id: str
    sender: str | None
    kind: str
    sent_ms: int
    body: JSON
    read: bool = False

    def view(self) -> MessageView:
        return {
            "id": self.id,
            "from": self.sender,
            "kind": self.kind,
            "sent_at": iso(self.sent_ms),
            "body": self.body,
            "read": self.read,
        }

    def entry(self, user_id: str, values: ValueCodec = PLAIN) -> Entry:
        """The stream entry's fields: ``f`` sender, ``k`` kind, ``t`` sent (ms), ``b`` body
        (sealed by ``values`` for the recipient ``user_id``)."""
        return {
            "f": self.sender or "",
            "k": self.kind,
            "t": str(self.sent_ms),
            BODY: values.seal(compact(self.body), user_aad(user_id, BODY)),
        }


BODY = "b"


Entry = dict[str, str]
"""A message as a stream entry holds it (see :meth:`Message.entry`): what Redis stores, and what
a process keeps of a message while Redis is down."""


def entry_fields(raw: Any) -> Entry:
    """A stream entry's fields as redis-py returned them (a dict, or a flat list)."""
    return raw if isinstance(raw, dict) else dict(zip(raw[::2], raw[1::2], strict=False))


def parse_entry(entry_id: str, raw: Any, user_id: str, values: ValueCodec = PLAIN) -> Message:
    """The message a stream entry holds (a body that no longer parses or opens reads as
    ``None``)."""
    fields = entry_fields(raw)
    try:
        body = json.loads(values.open(fields.get(BODY, "null"), user_aad(user_id, BODY)) or "")
    except ValueError:
        body = None
    return Message(
        id=entry_id,
        sender=fields.get("f") or None,
        kind=fields.get("k", "direct"),
        sent_ms=int(fields.get("t", entry_id.split("-")[0])),
        body=body,
    )


def check_body(body: object, max_bytes: int) -> JSON:
    """``body`` if it is JSON and at most ``max_bytes`` encoded; :class:`InvalidMessageError`."""
    try:
        size = len(compact(body).encode())  # a lone surrogate fails here, not on the way to Redis
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidMessageError(f"body must be JSON: {exc}") from exc
    if size > max_bytes:
        raise InvalidMessageError(f"body exceeds {max_bytes} bytes as JSON")
    return body  # type: ignore[return-value]  # compact() just proved it is JSON
