"""Per-user inboxes: messages kept while the user is offline, read state, live notification.

Redis keys, all in the recipient's slot ``{u:<user>}``:

* ``...:inbox`` stream; each entry has ``f`` (sender, empty for the operator), ``k`` (kind:
  ``direct``, ``admin``, ``broadcast``), ``t`` (sent, ms) and ``b`` (body, compact JSON). Every
  ``XADD`` trims to ``MAXLEN MESSAGES.MAX_PER_USER`` and ``XTRIM MINID now - RETENTION``,
  reads skip anything older than ``RETENTION``, and the key expires ``RETENTION`` after the last
  message.
* ``...:inbox:read`` hash, ``upto``: every id up to it is read; ``...:inbox:readids`` set: ids read
  one by one beyond it (``inbox_read.lua`` keeps both consistent).
* ``P inbox:notify`` Pub/Sub channel: the recipient's id after each delivery, so a process with
  open event streams reads (``XRANGE``, non-blocking) only when there is something to read. No
  request ever holds a pooled connection in a blocking read.

Delivery is at least once: a message stays in the stream until trimmed, whatever happens to the
reader, and a reconnecting reader resumes after the last id it saw (``Last-Event-ID``).

Degraded mode: messages sent while Redis is down are kept in memory as their stream entries
(the body sealed as in Redis) in the recipient's local inbox, and queued; live streams on this
process get them at once, reads are answered from the local inbox (what this process sent or
last read), and read marks are applied locally and queued. On recovery the queued messages are
appended to Redis (with their ids when still possible, else new ones, so a reader may see such
a message twice) and the read marks are written, before traffic returns to Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..exceptions import RateLimitedError
from ..presence import online_since
from ..ratelimit import WindowCounter
from ..stores.base import CommandCall, LuaScript, Op, PipelineCall, ScriptCall, send
from ..stores.redis import classify
from ..stores.resilient import USE_MEMORY, ResilientCore
from ..stores.userkeys import UserKeys
from ..valuecodec import PLAIN, ValueCodec
from ..views import JSON, Broadcast, MessagePage, MessageView, ReadMark
from .ids import MAX_ID_PART, check_ids, id_key
from .local import LocalInboxes
from .message import Entry, Message, check_body, entry_fields, parse_entry

log = logging.getLogger("sessionhub.inbox")

MARK_READ = LuaScript.load("inbox_read")
BROADCAST_BATCH = 500
MAX_PAGE = 500


class InboxOps:
    """Send, list and mark messages (I/O-free operations)."""

    def __init__(
        self,
        core: ResilientCore,
        keys: UserKeys,
        *,
        max_per_user: int = 1000,
        retention_s: int = 2_592_000,
        max_body_bytes: int = 4096,
        send_rate: int = 30,
        send_rate_window_s: int = 60,
        online_window_s: int = 300,
        values: ValueCodec = PLAIN,
    ) -> None:
        self.core = core
        self.keys = keys
        self.values = values
        self.max_per_user = max_per_user
        self.retention_ms = retention_s * 1000
        self.max_body_bytes = max_body_bytes
        self.send_rate = send_rate
        self.online_window_ms = online_window_s * 1000
        self.listeners: list[Callable[[str], None]] = []
        """Callables ``f(user_id)`` told of each delivery made by this process (live streams)."""
        self.online_here: Callable[[int], list[str]] = lambda _now: []
        """Set by the hub: users online on this process at ``now`` (ms): a degraded broadcast."""
        self.local = LocalInboxes(max_per_user, values)
        self._sends = WindowCounter(core, send_rate_window_s)
        core.recovery_hooks.append(self.flush)

    def check_body(self, body: object) -> JSON:
        """``body`` if it may be sent: JSON, within ``MESSAGES.MAX_BODY_BYTES``."""
        return check_body(body, self.max_body_bytes)

    def _notify(self, user_id: str) -> None:
        for listener in list(self.listeners):
            try:
                listener(user_id)
            except Exception:  # a listener must never fail a send
                log.debug("inbox listener failed", exc_info=True)

    def _xadd_calls(self, user_id: str, entry: Entry, msg_id: str) -> list[CommandCall]:
        key = self.keys.inbox(user_id)
        minid = max(0, int(entry["t"]) - self.retention_ms)
        fields = [text for pair in entry.items() for text in pair]
        return [
            # Exact trims: approximate ones ("~") only drop whole radix-tree nodes, so a small
            # inbox would keep messages past RETENTION indefinitely.
            CommandCall(("XADD", key, "MAXLEN", self.max_per_user, msg_id, *fields)),
            CommandCall(("XTRIM", key, "MINID", minid)),
            CommandCall(("PEXPIRE", key, self.retention_ms)),
            CommandCall(("PUBLISH", self.keys.inbox_notify(), user_id)),
        ]

    def _delivered(self, user_id: str, msg_id: str, entry: Entry) -> None:
        self.local.keep(user_id, [(msg_id, entry)])
        self._notify(user_id)

    # -- sending -------------------------------------------------------------------------------

    def check_rate(self, sender: str) -> Op[None]:
        """Count one message of ``sender``; :class:`RateLimitedError` beyond the limit."""
        count, retry_after = yield from self._sends.hit(self.keys.send_rate(sender))
        if count > self.send_rate:
            raise RateLimitedError(f"too many messages; retry in {retry_after} s", retry_after)

    def send(
        self, to: str, body: object, *, sender: str | None = None, kind: str = "direct"
    ) -> Op[MessageView]:
        """Append a message to ``to``'s inbox; returns it (with its id)."""
        message = Message("", sender, kind, self.core.clock(), self.check_body(body))
        entry = message.entry(to, self.values)
        replies = yield from self.core.on_redis(
            send(PipelineCall(tuple(self._xadd_calls(to, entry, "*"))))
        )
        if replies is USE_MEMORY:
            message.id = self.local.add_unsent(to, entry, queue=self.core.has_redis)
        else:
            message.id = str(replies[0])
        self._delivered(to, message.id, entry)
        return message.view()

    def broadcast(self, body: object, *, sender: str | None = None) -> Op[Broadcast]:
        """Send ``body`` to every user online now; returns how many received it."""
        body = self.check_body(body)
        now = self.core.clock()
        users = yield from self.core.on_redis(online_since(self.keys, now - self.online_window_ms))
        if users is USE_MEMORY:
            users = self.online_here(now)
        sent = 0
        while sent < len(users):
            batch = users[sent : sent + BROADCAST_BATCH]
            message = Message("", sender, "broadcast", now, body)
            entries = [(u, message.entry(u, self.values)) for u in batch]
            calls = [c for u, e in entries for c in self._xadd_calls(u, e, "*")]
            replies = yield from self.core.on_redis(send(PipelineCall(tuple(calls))))
            if replies is USE_MEMORY:
                break  # Redis went away (or was never there): the rest are kept in memory
            for i, (user, entry) in enumerate(entries):
                self._delivered(user, str(replies[4 * i]), entry)
            sent += len(batch)
        for user in users[sent:]:
            yield from self.send(user, body, sender=sender, kind="broadcast")
            sent += 1
        return {"recipients": sent}

    # -- reading -------------------------------------------------------------------------------

    def _read_state(self, user_id: str) -> Op[tuple[str, set[str]]]:
        calls = (
            CommandCall(("HGET", self.keys.inbox_read(user_id), "upto")),
            CommandCall(("SMEMBERS", self.keys.inbox_read_ids(user_id))),
        )
        upto, ids = yield PipelineCall(calls)
        return upto or "0-0", set(ids or ())

    def after(
        self, user_id: str, after_id: str = "0-0", *, limit: int = 100, unread: bool = False
    ) -> Op[list[Message]]:
        """Messages after ``after_id`` (exclusive), oldest first, at most ``limit``."""
        check_ids(after_id, what="a message id to read after")
        if id_key(after_id) == (MAX_ID_PART, MAX_ID_PART):
            return []  # nothing can follow the last possible id (Redis refuses "(" before it)
        found = yield from self.core.on_redis(self._after_redis(user_id, after_id, limit, unread))
        if found is USE_MEMORY:
            return self.local.after(user_id, after_id, limit, unread)
        return found

    def _after_redis(
        self, user_id: str, after_id: str, limit: int, unread: bool
    ) -> Op[list[Message]]:
        upto, read_ids = yield from self._read_state(user_id)
        start = max(after_id, f"{max(0, self.core.clock() - self.retention_ms)}-0", key=id_key)
        if unread and id_key(upto) > id_key(start):
            start = upto
        out: list[tuple[Message, Entry]] = []
        while len(out) < limit:
            batch = yield CommandCall(
                ("XRANGE", self.keys.inbox(user_id), f"({start}", "+", "COUNT", limit)
            )
            if not batch:
                break
            for entry_id, raw in batch:
                start = entry_id
                entry = entry_fields(raw)
                message = parse_entry(entry_id, entry, user_id, self.values)
                message.read = id_key(entry_id) <= id_key(upto) or entry_id in read_ids
                if not (unread and message.read):
                    out.append((message, entry))
            if len(batch) < limit:
                break
        out = out[:limit]
        self.local.keep(user_id, [(m.id, entry) for m, entry in out])
        return [m for m, _ in out]

    def page(
        self, user_id: str, *, cursor: str | None = None, limit: int = 50, unread: bool = False
    ) -> Op[MessagePage]:
        """A page of messages, oldest first; ``next_cursor`` continues after it (or None)."""
        limit = max(1, min(limit, MAX_PAGE))
        messages = yield from self.after(user_id, cursor or "0-0", limit=limit, unread=unread)
        return {
            "messages": [m.view() for m in messages],
            "next_cursor": messages[-1].id if len(messages) == limit else None,
        }

    def mark_read(
        self, user_id: str, *, up_to: str | None = None, ids: list[str] | tuple[str, ...] = ()
    ) -> Op[ReadMark]:
        """Mark everything up to ``up_to`` and/or the given ids read."""
        check_ids(*([up_to] if up_to else []), *ids)
        upto = self.local.mark(user_id, up_to, ids)
        stored = yield from self.core.on_redis(send(self._mark_call(user_id, up_to, set(ids))))
        if stored is not USE_MEMORY:
            return {"read_up_to": stored}
        if self.core.has_redis:
            self.local.queue_read(user_id, up_to, ids)
        return {"read_up_to": upto}

    def _mark_call(self, user_id: str, up_to: str | None, ids: set[str]) -> ScriptCall:
        keys = (self.keys.inbox_read(user_id), self.keys.inbox_read_ids(user_id))
        return ScriptCall(MARK_READ, keys, (self.retention_ms, up_to or "", *sorted(ids)))

    def read_cursor(self, user_id: str) -> Op[str]:
        """The id up to which everything is read (where a fresh live stream starts)."""
        state = yield from self.core.on_redis(self._read_state(user_id))
        return self.local.upto(user_id) if state is USE_MEMORY else state[0]

    # -- recovery ------------------------------------------------------------------------------

    def flush(self) -> Op[bool]:
        """Recovery hook: append the messages and write the read marks kept during the outage."""
        messages, reads = self.local.queued()
        for pending in messages:
            user_id, msg_id, entry = pending
            try:
                yield PipelineCall(tuple(self._xadd_calls(user_id, entry, msg_id)))
            except Exception as exc:
                if classify(exc) is not None:  # Redis cannot serve: the probe tries again later
                    raise
                # The id is no longer the newest in that stream: take a new one.
                yield PipelineCall(tuple(self._xadd_calls(user_id, entry, "*")))
            self.local.sent(pending)
        for user_id, (upto, ids) in reads.items():
            yield self._mark_call(user_id, None if upto == "0-0" else upto, ids)
            self.local.marked(user_id, (upto, ids))
        return self.local.drained()
