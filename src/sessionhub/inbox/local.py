"""What one process knows of inboxes: its recent messages per user, and what Redis has not seen.

Used while Redis is down: reads are answered from here (what this process sent or last read),
read marks are applied here, and messages and marks are queued for the recovery flush.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from .ids import id_key
from .message import Message


@dataclass
class _Box:
    messages: OrderedDict[str, Message] = field(default_factory=OrderedDict)
    upto: str = "0-0"
    read_ids: set[str] = field(default_factory=set)


class LocalInboxes:
    """This process's copy of recent messages and read marks, and the outage's queues."""

    def __init__(self, max_per_user: int) -> None:
        self.max_per_user = max_per_user
        self._lock = threading.Lock()
        self._boxes: dict[str, _Box] = {}
        self._seq = 0
        self.pending_messages: list[tuple[str, Message]] = []
        self.pending_reads: dict[str, tuple[str, set[str]]] = {}

    def _box(self, user_id: str) -> _Box:
        with self._lock:
            return self._boxes.setdefault(user_id, _Box())

    def keep(self, user_id: str, messages: list[Message]) -> None:
        """Remember messages of ``user_id`` (newest ``max_per_user`` kept)."""
        box = self._box(user_id)
        with self._lock:
            for m in messages:
                box.messages[m.id] = m
            ordered = sorted(box.messages.items(), key=lambda kv: id_key(kv[0]))
            box.messages = OrderedDict(ordered[-self.max_per_user :])

    def add_unsent(self, to: str, message: Message, *, queue: bool) -> None:
        """Give a message Redis did not take a local id, keep it, and queue it for recovery."""
        with self._lock:
            self._seq += 1
            message.id = f"{message.sent_ms}-{self._seq}"
            if queue:
                self.pending_messages.append((to, message))
        self.keep(to, [message])

    def after(self, user_id: str, after_id: str, limit: int, unread: bool) -> list[Message]:
        """Messages after ``after_id`` that this process knows, oldest first."""
        box = self._box(user_id)
        with self._lock:
            out = []
            for m in box.messages.values():
                if id_key(m.id) <= id_key(after_id):
                    continue
                m.read = id_key(m.id) <= id_key(box.upto) or m.id in box.read_ids
                if unread and m.read:
                    continue
                out.append(m)
                if len(out) >= limit:
                    break
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

    def queued(self) -> tuple[list[tuple[str, Message]], dict[str, tuple[str, set[str]]]]:
        """A copy of what waits for Redis: messages and read marks."""
        with self._lock:
            return list(self.pending_messages), dict(self.pending_reads)

    def sent(self, user_id: str, message: Message) -> None:
        """A queued message reached Redis."""
        with self._lock:
            self.pending_messages.remove((user_id, message))

    def marked(self, user_id: str, marks: tuple[str, set[str]]) -> None:
        """Queued read marks reached Redis (unless newer ones were queued meanwhile)."""
        with self._lock:
            if self.pending_reads.get(user_id) == marks:
                del self.pending_reads[user_id]

    def drained(self) -> bool:
        """Whether nothing waits for Redis."""
        with self._lock:
            return not self.pending_messages and not self.pending_reads
