"""What one process knows of inboxes: its recent messages per user, and what Redis has not seen.

Used while Redis is down: reads are answered from here (what this process sent or last read),
read marks are applied here, and messages and marks are queued for the recovery flush. A
message is kept as its stream entry, as Redis holds it (the body sealed by the value codec:
encrypted under ``ENCRYPTION.KEYS``), and opened only when read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from ..valuecodec import PLAIN, ValueCodec
from .ids import id_key
from .message import Entry, Message, parse_entry


@dataclass
class _Box:
    entries: OrderedDict[str, Entry] = field(default_factory=OrderedDict)
    upto: str = "0-0"
    read_ids: set[str] = field(default_factory=set)


class LocalInboxes:
    """This process's copy of recent messages and read marks, and the outage's queues."""

    def __init__(self, max_per_user: int, values: ValueCodec = PLAIN) -> None:
        self.max_per_user = max_per_user
        self.values = values
        self._lock = threading.Lock()
        self._boxes: dict[str, _Box] = {}
        self._seq = 0
        self.pending_messages: list[tuple[str, str, Entry]] = []
        """``(recipient, local id, entry)`` of each message Redis has not taken yet."""
        self.pending_reads: dict[str, tuple[str, set[str]]] = {}

    def _box(self, user_id: str) -> _Box:
        with self._lock:
            return self._boxes.setdefault(user_id, _Box())

    def keep(self, user_id: str, entries: list[tuple[str, Entry]]) -> None:
        """Remember ``(id, entry)`` messages of ``user_id`` (newest ``max_per_user`` kept)."""
        box = self._box(user_id)
        with self._lock:
            for entry_id, entry in entries:
                box.entries[entry_id] = entry
            ordered = sorted(box.entries.items(), key=lambda kv: id_key(kv[0]))
            box.entries = OrderedDict(ordered[-self.max_per_user :])

    def add_unsent(self, to: str, entry: Entry, *, queue: bool) -> str:
        """A local id for a message Redis did not take, which is queued for recovery."""
        with self._lock:
            self._seq += 1
            entry_id = f"{entry['t']}-{self._seq}"
            if queue:
                self.pending_messages.append((to, entry_id, entry))
        return entry_id

    def after(self, user_id: str, after_id: str, limit: int, unread: bool) -> list[Message]:
        """Messages after ``after_id`` that this process knows, oldest first."""
        box = self._box(user_id)
        with self._lock:
            found = []
            for entry_id, entry in box.entries.items():
                if id_key(entry_id) <= id_key(after_id):
                    continue
                read = id_key(entry_id) <= id_key(box.upto) or entry_id in box.read_ids
                if unread and read:
                    continue
                found.append((entry_id, entry, read))
                if len(found) >= limit:
                    break
        out = []
        for entry_id, entry, read in found:
            message = parse_entry(entry_id, entry, user_id, self.values)
            message.read = read
            out.append(message)
        return out

    def mark(self, user_id: str, up_to: str | None, ids: tuple[str, ...] | list[str]) -> str:
        """Apply read marks here; returns the id everything is read up to."""
        box = self._box(user_id)
        with self._lock:
            if up_to and id_key(up_to) > id_key(box.upto):
                box.upto = up_to
            box.read_ids |= {i for i in ids if id_key(i) > id_key(box.upto)}
            box.read_ids = {i for i in box.read_ids if id_key(i) > id_key(box.upto)}
            return box.upto

    def queue_read(self, user_id: str, up_to: str | None, ids: tuple[str, ...] | list[str]) -> None:
        """Hold read marks for the recovery flush."""
        with self._lock:
            prev_upto, prev_ids = self.pending_reads.get(user_id, ("0-0", set()))
            new_upto = max(prev_upto, up_to or "0-0", key=id_key)
            self.pending_reads[user_id] = (new_upto, prev_ids | set(ids))

    def upto(self, user_id: str) -> str:
        """The id up to which this process saw everything of ``user_id`` read."""
        return self._box(user_id).upto

    def queued(self) -> tuple[list[tuple[str, str, Entry]], dict[str, tuple[str, set[str]]]]:
        """A copy of what waits for Redis: messages and read marks."""
        with self._lock:
            return list(self.pending_messages), dict(self.pending_reads)

    def sent(self, pending: tuple[str, str, Entry]) -> None:
        """A queued message (as :meth:`queued` listed it) reached Redis."""
        with self._lock:
            self.pending_messages.remove(pending)

    def marked(self, user_id: str, marks: tuple[str, set[str]]) -> None:
        """Queued read marks reached Redis (unless newer ones were queued meanwhile)."""
        with self._lock:
            if self.pending_reads.get(user_id) == marks:
                del self.pending_reads[user_id]

    def drained(self) -> bool:
        """Whether nothing waits for Redis."""
        with self._lock:
            return not self.pending_messages and not self.pending_reads
