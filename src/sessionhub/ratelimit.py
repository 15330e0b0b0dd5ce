"""Fixed-window counters in Redis, with the same counting in memory while Redis is down."""

from __future__ import annotations

import threading

from .stores.base import CommandCall, Op, PipelineCall, send
from .stores.resilient import USE_MEMORY, ResilientCore

MEMORY_WINDOWS_MAX = 100_000
"""Windows kept in memory before ended ones are dropped: an outage cannot grow the table without
bound however many keys are counted."""


class WindowCounter:
    """Counts events per key in windows of ``window_s`` seconds that start at a key's first event.

    Redis: ``INCR`` and ``EXPIRE NX`` in one round trip, so every instance shares the count. While
    Redis is down each process counts on its own, which is the best it can do and never stricter
    than the shared count would be.
    """

    def __init__(self, core: ResilientCore, window_s: int) -> None:
        self.core = core
        self.window_s = window_s
        self._lock = threading.Lock()
        self._memory: dict[str, tuple[int, int]] = {}  # key -> (window start s, count)

    def hit(self, key: str) -> Op[tuple[int, int]]:
        """Count one event of ``key``: ``(events in its window so far, seconds until it ends)``."""
        replies = yield from self.core.on_redis(
            send(
                PipelineCall(
                    (
                        CommandCall(("INCR", key)),
                        CommandCall(("EXPIRE", key, self.window_s, "NX")),
                        CommandCall(("TTL", key)),
                    )
                )
            )
        )
        if replies is not USE_MEMORY:
            return int(replies[0]), max(1, int(replies[2]))
        now_s = self.core.clock() // 1000
        with self._lock:
            if len(self._memory) >= MEMORY_WINDOWS_MAX:
                self._memory = {
                    k: v for k, v in self._memory.items() if now_s - v[0] < self.window_s
                }
            start, count = self._memory.get(key, (now_s, 0))
            if now_s - start >= self.window_s:
                start, count = now_s, 0
            self._memory[key] = (start, count + 1)
        return count + 1, max(1, self.window_s - (now_s - start))
