"""Stopping the background tasks that hold a Pub/Sub subscription."""

from __future__ import annotations

import asyncio
import contextlib


async def cancel_subscriber(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` and wait until it has really ended.

    A cancellation that lands while redis-py is still setting up a subscription can be absorbed
    there (a service stopped right after it started hung on it), so it is repeated until the task
    is done.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
