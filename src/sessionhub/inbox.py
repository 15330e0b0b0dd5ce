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

Degraded mode: messages sent while Redis is down are kept in memory (in the recipient's local
inbox, and queued), live streams on this process get them at once, reads are answered from the
local inbox (what this process sent or last read), and read marks are applied locally and
queued. On recovery the queued messages are appended to Redis (with their ids when still
possible, else new ones, so a reader may see such a message twice) and the read marks are
written, before traffic returns to Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from .jsontext import compact
from .stores.base import CommandCall, LuaScript, Op, PipelineCall, ScriptCall
from .stores.redis import REDIS_DOWN
from .stores.resilient import ResilientCore
from .stores.userkeys import UserKeys
from .timefmt import iso

log = logging.getLogger("sessionhub.inbox")

MARK_READ = LuaScript.load("inbox_read")
BROADCAST_BATCH = 500
MAX_PAGE = 500


class InvalidMessage(ValueError):
    """The message body is not acceptable (not JSON, too large)."""


class RateLimited(Exception):
    """The sender exceeded ``MESSAGES.SEND_RATE`` per ``SEND_RATE_WINDOW``."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many messages; retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class Message:
    """One inbox entry."""

    id: str
    sender: str | None
    kind: str
    sent_ms: int
    body: Any
    read: bool = False

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.sender,
            "kind": self.kind,
            "sent_at": iso(self.sent_ms),
            "body": self.body,
            "read": self.read,
        }

    def fields(self) -> list[str]:
        return [
            "f",
            self.sender or "",
            "k",
            self.kind,
            "t",
            str(self.sent_ms),
            "b",
            compact(self.body),
        ]


def id_key(message_id: str) -> tuple[int, int]:
    """A stream id as a sortable pair; ``(-1, -1)`` for anything else."""
    ms, sep, seq = message_id.partition("-")
    if not sep or not ms.isdigit() or not seq.isdigit():
        return (-1, -1)
    return int(ms), int(seq)


def valid_id(message_id: str) -> bool:
    return id_key(message_id) != (-1, -1)


@dataclass
class _LocalInbox:
    messages: OrderedDict[str, Message] = field(default_factory=OrderedDict)
    upto: str = "0-0"
    read_ids: set[str] = field(default_factory=set)


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
    ) -> None:
        self.core = core
        self.keys = keys
        self.max_per_user = max_per_user
        self.retention_ms = retention_s * 1000
        self.max_body_bytes = max_body_bytes
        self.send_rate = send_rate
        self.send_rate_window_s = send_rate_window_s
        self.online_window_ms = online_window_s * 1000
        self.listeners: list[Any] = []
        """Callables ``f(user_id)`` told of each delivery made by this process (live streams)."""
        self._lock = threading.Lock()
        self._local: dict[str, _LocalInbox] = {}
        self._seq = 0
        self._pending_messages: list[tuple[str, Message]] = []
        self._pending_reads: dict[str, tuple[str, set[str]]] = {}
        self._rate: dict[str, tuple[int, int]] = {}  # degraded-mode rate windows
        core.recovery_hooks.append(self.flush)

    # -- helpers -------------------------------------------------------------------------------

    def check_body(self, body: Any) -> Any:
        """The body if it is JSON and within ``MESSAGES.MAX_BODY_BYTES``."""
        try:
            encoded = compact(body)
        except (TypeError, ValueError) as exc:
            raise InvalidMessage(f"body must be JSON: {exc}") from exc
        if len(encoded.encode()) > self.max_body_bytes:
            raise InvalidMessage(f"body exceeds {self.max_body_bytes} bytes as JSON")
        return body

    def _inbox(self, user_id: str) -> _LocalInbox:
        with self._lock:
            return self._local.setdefault(user_id, _LocalInbox())

    def _cache(self, user_id: str, messages: list[Message]) -> None:
        box = self._inbox(user_id)
        with self._lock:
            for m in messages:
                box.messages[m.id] = m
            ordered = sorted(box.messages.items(), key=lambda kv: id_key(kv[0]))
            box.messages = OrderedDict(ordered[-self.max_per_user :])

    def _notify(self, user_id: str) -> None:
        for listener in list(self.listeners):
            try:
                listener(user_id)
            except Exception:  # a listener must never fail a send
                log.debug("inbox listener failed", exc_info=True)

    def _xadd_calls(self, user_id: str, message: Message, msg_id: str) -> list[CommandCall]:
        key = self.keys.inbox(user_id)
        minid = max(0, message.sent_ms - self.retention_ms)
        return [
            # Exact trims: approximate ones ("~") only drop whole radix-tree nodes, so a small
            # inbox would keep messages past RETENTION indefinitely.
            CommandCall(("XADD", key, "MAXLEN", self.max_per_user, msg_id, *message.fields())),
            CommandCall(("XTRIM", key, "MINID", minid)),
            CommandCall(("PEXPIRE", key, self.retention_ms)),
            CommandCall(("PUBLISH", self.keys.inbox_notify(), user_id)),
        ]

    # -- sending -------------------------------------------------------------------------------

    def check_rate(self, sender: str) -> Op[None]:
        """Count one message of ``sender``; :class:`RateLimited` beyond the limit."""
        window = self.send_rate_window_s
        if self.core.redis_up:
            key = self.keys.send_rate(sender)
            try:
                count, _, ttl = yield PipelineCall(
                    (
                        CommandCall(("INCR", key)),
                        CommandCall(("EXPIRE", key, window, "NX")),
                        CommandCall(("TTL", key)),
                    )
                )
            except REDIS_DOWN as exc:
                self.core.trip(exc)
            else:
                if int(count) > self.send_rate:
                    raise RateLimited(max(1, int(ttl)))
                return
        now_s = self.core.clock() // 1000
        with self._lock:
            start, count = self._rate.get(sender, (now_s, 0))
            if now_s - start >= window:
                start, count = now_s, 0
            count += 1
            self._rate[sender] = (start, count)
        if count > self.send_rate:
            raise RateLimited(max(1, window - (now_s - start)))

    def send(
        self, to: str, body: Any, *, sender: str | None = None, kind: str = "direct"
    ) -> Op[dict[str, Any]]:
        """Append a message to ``to``'s inbox; returns it (with its id)."""
        self.check_body(body)
        message = Message("", sender, kind, self.core.clock(), body)
        if self.core.redis_up:
            try:
                replies = yield PipelineCall(tuple(self._xadd_calls(to, message, "*")))
            except REDIS_DOWN as exc:
                self.core.trip(exc)
            else:
                message.id = str(replies[0])
                self._cache(to, [message])
                self._notify(to)
                return message.view()
        with self._lock:
            self._seq += 1
            message.id = f"{message.sent_ms}-{self._seq}"
            if self.core.redis is not None:
                self._pending_messages.append((to, message))
        self._cache(to, [message])
        self._notify(to)
        return message.view()

    def broadcast(self, body: Any, *, sender: str | None = None) -> Op[dict[str, Any]]:
        """Send ``body`` to every user online now; returns how many received it."""
        self.check_body(body)
        now = self.core.clock()
        users: list[str] = []
        if self.core.redis_up:
            try:
                users = yield CommandCall(
                    ("ZRANGE", self.keys.online(), now - self.online_window_ms, "+inf", "BYSCORE")
                )
            except REDIS_DOWN as exc:
                self.core.trip(exc)
        if not self.core.redis_up:
            users = self._online_here(now)
        sent = 0
        while sent < len(users) and self.core.redis_up:
            batch = users[sent : sent + BROADCAST_BATCH]
            messages = [(u, Message("", sender, "broadcast", now, body)) for u in batch]
            calls = [c for u, m in messages for c in self._xadd_calls(u, m, "*")]
            try:
                replies = yield PipelineCall(tuple(calls))  # one round trip per batch
            except REDIS_DOWN as exc:
                self.core.trip(exc)
                break
            for i, (user, message) in enumerate(messages):
                message.id = str(replies[4 * i])
                self._cache(user, [message])
                self._notify(user)
            sent += len(batch)
        for user in users[sent:]:  # Redis went away (or was never there): keep them in memory
            yield from self.send(user, body, sender=sender, kind="broadcast")
            sent += 1
        return {"recipients": sent}

    online_here: Any = None
    """Set by the hub: ``f(now_ms) -> [user ids]`` online on this process (degraded broadcast)."""

    def _online_here(self, now: int) -> list[str]:
        return list(self.online_here(now)) if self.online_here is not None else []

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
        if not valid_id(after_id):
            raise ValueError("cursor must be a message id such as 1700000000000-0")
        if self.core.redis_up:
            try:
                return (yield from self._after_redis(user_id, after_id, limit, unread))
            except REDIS_DOWN as exc:
                self.core.trip(exc)
        return self._after_local(user_id, after_id, limit, unread)

    def _after_redis(
        self, user_id: str, after_id: str, limit: int, unread: bool
    ) -> Op[list[Message]]:
        upto, read_ids = yield from self._read_state(user_id)
        start = max(after_id, f"{max(0, self.core.clock() - self.retention_ms)}-0", key=id_key)
        if unread and id_key(upto) > id_key(start):
            start = upto
        out: list[Message] = []
        while len(out) < limit:
            batch = yield CommandCall(
                ("XRANGE", self.keys.inbox(user_id), f"({start}", "+", "COUNT", limit)
            )
            if not batch:
                break
            for entry_id, raw in batch:
                start = entry_id
                message = _parse(entry_id, raw)
                message.read = id_key(entry_id) <= id_key(upto) or entry_id in read_ids
                if not (unread and message.read):
                    out.append(message)
            if len(batch) < limit:
                break
        out = out[:limit]
        self._cache(user_id, out)
        return out

    def _after_local(self, user_id: str, after_id: str, limit: int, unread: bool) -> list[Message]:
        box = self._inbox(user_id)
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

    def page(
        self, user_id: str, *, cursor: str | None = None, limit: int = 50, unread: bool = False
    ) -> Op[dict[str, Any]]:
        """A page of messages, oldest first; ``next_cursor`` continues after it (or None)."""
        limit = max(1, min(limit, MAX_PAGE))
        messages = yield from self.after(user_id, cursor or "0-0", limit=limit, unread=unread)
        return {
            "messages": [m.view() for m in messages],
            "next_cursor": messages[-1].id if len(messages) == limit else None,
        }

    def mark_read(
        self, user_id: str, *, up_to: str | None = None, ids: list[str] | tuple[str, ...] = ()
    ) -> Op[dict[str, Any]]:
        """Mark everything up to ``up_to`` and/or the given ids read."""
        bad = [i for i in ([up_to] if up_to else []) + list(ids) if not valid_id(i)]
        if bad:
            raise ValueError(f"not message ids: {', '.join(bad[:5])}")
        self._mark_local(user_id, up_to, ids)
        if self.core.redis_up:
            try:
                upto = yield self._mark_call(user_id, up_to, set(ids))
            except REDIS_DOWN as exc:
                self.core.trip(exc)
            else:
                return {"read_up_to": upto}
        if self.core.redis is not None:
            with self._lock:
                prev_upto, prev_ids = self._pending_reads.get(user_id, ("0-0", set()))
                new_upto = max(prev_upto, up_to or "0-0", key=id_key)
                self._pending_reads[user_id] = (new_upto, prev_ids | set(ids))
        return {"read_up_to": self._inbox(user_id).upto}

    def _mark_local(self, user_id: str, up_to: str | None, ids: Any) -> None:
        box = self._inbox(user_id)
        with self._lock:
            if up_to and id_key(up_to) > id_key(box.upto):
                box.upto = up_to
            box.read_ids |= {i for i in ids if id_key(i) > id_key(box.upto)}
            box.read_ids = {i for i in box.read_ids if id_key(i) > id_key(box.upto)}

    def _mark_call(self, user_id: str, up_to: str | None, ids: set[str]) -> ScriptCall:
        keys = (self.keys.inbox_read(user_id), self.keys.inbox_read_ids(user_id))
        return ScriptCall(MARK_READ, keys, (self.retention_ms, up_to or "", *sorted(ids)))

    def read_cursor(self, user_id: str) -> Op[str]:
        """The id up to which everything is read (where a fresh live stream starts)."""
        if self.core.redis_up:
            try:
                upto, _ = yield from self._read_state(user_id)
            except REDIS_DOWN as exc:
                self.core.trip(exc)
            else:
                return upto
        return self._inbox(user_id).upto

    # -- recovery ------------------------------------------------------------------------------

    def flush(self) -> Op[bool]:
        """Recovery hook: append the messages and write the read marks kept during the outage."""
        with self._lock:
            messages = list(self._pending_messages)
            reads = dict(self._pending_reads)
        for user_id, message in messages:
            try:
                yield PipelineCall(tuple(self._xadd_calls(user_id, message, message.id)))
            except REDIS_DOWN:
                raise
            except Exception:  # the id is no longer the newest in that stream: take a new one
                yield PipelineCall(tuple(self._xadd_calls(user_id, message, "*")))
            with self._lock:
                self._pending_messages.remove((user_id, message))
        for user_id, (upto, ids) in reads.items():
            yield self._mark_call(user_id, None if upto == "0-0" else upto, ids)
            with self._lock:
                if self._pending_reads.get(user_id) == (upto, ids):
                    del self._pending_reads[user_id]
        with self._lock:
            return not self._pending_messages and not self._pending_reads


def _parse(entry_id: str, raw: Any) -> Message:
    fields = raw if isinstance(raw, dict) else dict(zip(raw[::2], raw[1::2], strict=False))
    try:
        body = json.loads(fields.get("b", "null"))
    except ValueError:
        body = None
    return Message(
        id=entry_id,
        sender=fields.get("f") or None,
        kind=fields.get("k", "direct"),
        sent_ms=int(fields.get("t", entry_id.split("-")[0])),
        body=body,
    )


class InboxNotifier:
    """One Pub/Sub subscription per process that wakes the live streams of its users.

    It holds one dedicated connection (never a pooled one in a blocking read); local deliveries
    (including those made while Redis is down) wake streams directly.
    """

    def __init__(self, inbox: InboxOps, client: aioredis.Redis | None) -> None:
        self.inbox = inbox
        self.client = client
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.inbox.listeners.append(self._from_any_thread)
        if self.client is not None:
            self._task = asyncio.create_task(self._listen(), name="sessionhub-inbox-notify")

    async def aclose(self) -> None:
        with contextlib.suppress(ValueError):
            self.inbox.listeners.remove(self._from_any_thread)
        task, self._task = self._task, None
        if task is None:
            return
        # A cancellation that lands while redis-py is still setting up the subscription can be
        # absorbed there (a service stopped right after it started hung here): cancel until the
        # task has really ended.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.result()

    def _from_any_thread(self, user_id: str) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.wake(user_id)
        else:
            loop.call_soon_threadsafe(self.wake, user_id)

    def wake(self, user_id: str) -> None:
        for event in self._waiters.get(user_id, ()):
            event.set()

    @contextlib.asynccontextmanager
    async def subscription(self, user_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever ``user_id`` may have new messages."""
        event = asyncio.Event()
        self._waiters.setdefault(user_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(user_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[user_id]

    async def _listen(self) -> None:
        assert self.client is not None
        channel = self.inbox.keys.inbox_notify()
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                # Streams may have missed deliveries while unsubscribed: wake them all once.
                for user_id in list(self._waiters):
                    self.wake(user_id)
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        self.wake(str(msg["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("inbox notification channel lost; retrying", exc_info=True)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
