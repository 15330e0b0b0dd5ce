"""What the service reads in the background, never on a request's path: Redis's own figures
(``INFO``), the session counts and how many users are online.

``GET /api/session/stats`` and ``GET /api/health/redis`` show the last figures read; ``GET
/metrics`` exports them. A refresh goes through the resilient core like any operation, so it
does not touch Redis while the circuit is open (the figures then keep their ``read_at``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, TypedDict

import redis

from ..hub import AsyncSessionHub
from ..stores.base import CommandCall, send
from ..stores.resilient import USE_MEMORY
from ..timefmt import iso

log = logging.getLogger("sessionhub.service")

INFO_SECTIONS = ("INFO", "memory", "clients", "stats", "replication")


class RedisInfo(TypedDict):
    """Redis's own figures, as ``INFO`` last gave them."""

    used_memory: int
    maxmemory: int
    evicted_keys: int
    connected_clients: int
    role: str
    read_at: str


def redis_info(info: dict[str, Any], now_ms: int) -> RedisInfo:
    """The figures SessionHub shows, from redis-py's parsed ``INFO``."""
    return {
        "used_memory": int(info.get("used_memory", 0)),
        "maxmemory": int(info.get("maxmemory", 0)),
        "evicted_keys": int(info.get("evicted_keys", 0)),
        "connected_clients": int(info.get("connected_clients", 0)),
        "role": str(info.get("role", "unknown")),
        "read_at": iso(now_ms),
    }


class Monitor:
    """Refreshes the figures every ``interval`` seconds in a task of its own."""

    def __init__(self, hub: AsyncSessionHub, interval: float) -> None:
        self.hub = hub
        self.interval = interval
        self.redis_info: RedisInfo | None = None
        self.redis_sessions: int | None = None
        """Sessions counted in Redis (``None``: not known, e.g. while degraded)."""
        self.online_users: int | None = None
        self.refreshed: list[Callable[[], None]] = []
        """Called after each refresh (the metrics copy what they need)."""
        self._task: asyncio.Task[None] | None = None
        self._info_refused = False

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="sessionhub-monitor")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except Exception:  # a failed refresh must not end the loop
                log.debug("monitor refresh failed", exc_info=True)

    async def refresh(self) -> None:
        """Read every figure once (a few pipelined calls; none while degraded)."""
        hub = self.hub
        core = hub.manager.core
        in_redis, _ = await hub.run(core.count())
        self.redis_sessions = in_redis
        online = await hub.presence.online_count()
        self.online_users = online["online_users"]
        if core.has_redis and not self._info_refused:
            await self._read_info()
        for listener in self.refreshed:
            listener()

    async def _read_info(self) -> None:
        core = self.hub.manager.core
        try:
            info = await self.hub.run(core.on_redis(send(CommandCall(INFO_SECTIONS))))
        except redis.ResponseError as exc:
            # An ACL user without INFO: say so once, and stop asking.
            log.warning("Redis refused INFO, its figures are not shown: %s", exc)
            self._info_refused = True
            return
        if info is not USE_MEMORY:
            self.redis_info = redis_info(info, core.clock())
