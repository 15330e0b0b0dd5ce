"""``expired`` events from Redis keyspace notifications (``EVENTS.ENABLE_KEYSPACE_NOTIFICATIONS``).

Redis publishes the name of every key it expires on ``__keyevent@<db>__:expired`` once
``notify-keyspace-events`` holds ``E`` and ``x``. The hub turns that on (at start and after each
outage, since a restarted Redis forgets it) and subscribes like the revocation channel does. A
refusal (``CONFIG`` is often disabled on managed Redis) is logged, and the user index's sweep
reports expiries instead.

Every subscribed process hears every expiry; the one whose ``SET NX`` of the session's claim key
succeeds reports it, so an expiry is one event in the whole deployment. The session's hash is
gone by then: these events carry no user id.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import redis

from .events import EventBus
from .stores.base import CommandCall, Op, send
from .stores.redis import KeySpace
from .stores.resilient import USE_MEMORY, ResilientCore

log = logging.getLogger("sessionhub.events")

CLAIM_TTL_MS = 60_000
"""How long a claim outlives the expiry it reports: far longer than a notification takes to
reach every subscriber."""


class ExpiryFeed:
    """What the keyspace subscription does with each message (a feed for the subscribers of
    :mod:`sessionhub.revocations`)."""

    def __init__(self, bus: EventBus, keys: KeySpace, db: int) -> None:
        self.bus = bus
        self.channel = f"__keyevent@{db}__:expired"
        self.retry_s = 0.1
        self._session_key = re.compile(re.escape(keys.prefix) + r"\{\d+\}:s:([0-9a-f]+)")

    def lost(self, exc: Exception, *, redis_answers: bool) -> None:
        """The subscription failed; expiries while it is down are not reported."""
        log.debug("keyspace notification channel lost; subscribing again", exc_info=exc)

    def handle(self, message: dict[str, Any] | None) -> bool:
        """Turn an expired session key into an event; ``True`` once subscribed."""
        if message is None:
            return False
        if message.get("type") == "message":
            found = self._session_key.fullmatch(str(message["data"]))
            if found is not None:  # not a tombstone, a claim or the probe's key
                self.bus.emit("expired", found[1], claim=True)
        return message.get("type") == "subscribe"


def enable_notifications(bus: EventBus) -> Op[bool]:
    """Add ``E`` and ``x`` to ``notify-keyspace-events``, keeping what else is set.

    Sets :attr:`EventBus.keyspace` to whether Redis reports expiries now. Always ``True``, as a
    recovery hook must: a refusal is not something a retry would change.
    """
    try:
        reply = yield CommandCall(("CONFIG", "GET", "notify-keyspace-events"))
        flags = _config_value(reply)
        wanted = flags + ("E" if "E" not in flags else "")
        wanted += "" if "x" in flags or "A" in flags else "x"
        if wanted != flags:
            yield CommandCall(("CONFIG", "SET", "notify-keyspace-events", wanted))
    except redis.ResponseError as exc:  # at start and after an outage: rare enough to say each time
        log.warning(
            "Redis refused to enable keyspace notifications (%s): expiry events come from the "
            "user session index instead (see docs/EVENTS.md)",
            exc,
        )
        bus.keyspace = False
        return True
    bus.keyspace = True
    return True


def _config_value(reply: Any) -> str:
    if isinstance(reply, dict):
        return str(next(iter(reply.values()), ""))
    items = list(reply or ())
    return str(items[1]) if len(items) > 1 else ""


def claim_expiry(core: ResilientCore, storage_id: str) -> Op[bool]:
    """Whether this process reports the expiry of ``storage_id`` (``True`` without Redis to ask)."""
    assert core.redis_ops is not None
    key = core.redis_ops.keys.expiry_claim(storage_id)
    won = yield from core.on_redis(send(CommandCall(("SET", key, "1", "NX", "PX", CLAIM_TTL_MS))))
    return won is USE_MEMORY or bool(won)
