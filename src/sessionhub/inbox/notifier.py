"""One Pub/Sub subscription per process that wakes the live event streams of its users."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from ..stores.topology import AsyncClient
from ..subscribers import cancel_subscriber, with_own_pool
from .ops import InboxOps

log = logging.getLogger("sessionhub.inbox")


class InboxNotifier:
    """One Pub/Sub subscription per process that wakes the live streams of its users.

    It holds one dedicated connection (never a pooled one in a blocking read); local deliveries
    (including those made while Redis is down) wake streams directly.
    """

    def __init__(self, inbox: InboxOps, client: AsyncClient | None) -> None:
        self.inbox = inbox
        self.client = None if client is None else with_own_pool(client)
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
        await cancel_subscriber(task)
        if self.client is not None:
            await self.client.aclose()

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
