"""One Pub/Sub subscription per process that wakes the live event streams of its users."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..revocations import RevocationTask
from ..stores.topology import AsyncClient
from .ops import InboxOps

log = logging.getLogger("sessionhub.inbox")


class _WakeFeed:
    """What the subscription does with the inbox channel's messages: each names a user whose
    streams to wake; a (re)subscription wakes every stream, which may have missed deliveries."""

    def __init__(
        self, channel: str, wake: Callable[[str], None], wake_all: Callable[[], None]
    ) -> None:
        self.channel = channel
        self.retry_s = 0.5
        self._wake = wake
        self._wake_all = wake_all

    def handle(self, message: dict[str, Any] | None) -> bool:
        if message is None:
            return False
        if message.get("type") == "message":
            self._wake(str(message["data"]))
        elif message.get("type") == "subscribe":
            self._wake_all()
            return True
        return False

    def lost(self, exc: Exception, *, redis_answers: bool) -> None:
        log.debug("inbox notification channel lost; subscribing again", exc_info=exc)


class InboxNotifier:
    """One Pub/Sub subscription per process that wakes the live streams of its users.

    The subscription is the revocation link's (:class:`~sessionhub.revocations.RevocationTask`)
    with a feed of its own: a dedicated connection (never a pooled one in a blocking read), a
    silent link noticed and made again, and on Cluster the slot map read again after a loss, so
    the subscription follows its channel's slot to the replica promoted in place of a dead
    master. Local deliveries (including those made while Redis is down) wake streams directly.
    """

    def __init__(self, inbox: InboxOps, client: AsyncClient | None) -> None:
        self.inbox = inbox
        self._link: RevocationTask | None = None
        if client is not None:
            feed = _WakeFeed(inbox.keys.inbox_notify(), self.wake, self._wake_everyone)
            self._link = RevocationTask(feed, client, "inbox-notify")
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.inbox.listeners.append(self._from_any_thread)
        if self._link is not None:
            await self._link.start(0.0)  # streams wait on their own; a start does not

    async def aclose(self) -> None:
        with contextlib.suppress(ValueError):
            self.inbox.listeners.remove(self._from_any_thread)
        link, self._link = self._link, None
        if link is not None:
            await link.aclose()

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

    def _wake_everyone(self) -> None:
        for user_id in list(self._waiters):
            self.wake(user_id)

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
