"""Run an I/O-free operation (see :mod:`.base`) over a blocking or an asyncio redis-py client.

``run_sync`` and ``run_async`` are the only place where sync and async code differ; keep them
mirror images. :class:`AutoPipeline` batches the asyncio side's concurrent calls.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from ..exceptions import StoreError
from .base import Call, CommandCall, Op, PipelineCall, ScriptCall

T = TypeVar("T")


def _evalsha_args(call: ScriptCall) -> tuple[Any, ...]:
    return ("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)


def _eval_args(call: ScriptCall) -> tuple[Any, ...]:
    return ("EVAL", call.script.source, len(call.keys), *call.keys, *call.args)


def _single_args(call: ScriptCall | CommandCall) -> tuple[Any, ...]:
    return _evalsha_args(call) if isinstance(call, ScriptCall) else call.args


def _first_error(replies: list[Any]) -> Exception | None:
    return next((r for r in replies if isinstance(r, Exception)), None)


class NoRedisConfigured(StoreError):
    """A memory-only store was asked to reach Redis (a bug in the operation)."""


def run_sync(op: Op[T], client: redis.Redis | None) -> T:
    """Drive ``op`` to completion with a blocking client (``None``: memory-only, no calls)."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            call = op.throw(error) if error is not None else op.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        try:
            reply = _execute_sync(call, client)
        except Exception as exc:
            error = exc


def _execute_sync(call: Call, client: redis.Redis | None) -> Any:
    if client is None:
        raise NoRedisConfigured(f"no Redis client for {call!r}")
    if isinstance(call, PipelineCall):
        pipe = client.pipeline(transaction=False)
        for sub in call.calls:
            pipe.execute_command(*_single_args(sub))
        replies: list[Any] = pipe.execute(raise_on_error=False)
        for i, (sub, rep) in enumerate(zip(call.calls, replies, strict=True)):
            if isinstance(rep, NoScriptError) and isinstance(sub, ScriptCall):
                replies[i] = client.execute_command(*_eval_args(sub))
        if (err := _first_error(replies)) is not None:
            raise err
        return replies
    if isinstance(call, ScriptCall):
        try:
            return client.execute_command(*_evalsha_args(call))
        except NoScriptError:
            return client.execute_command(*_eval_args(call))
    return client.execute_command(*call.args)


async def run_async(op: Op[T], client: aioredis.Redis | AutoPipeline | None) -> T:
    """Drive ``op`` to completion with an asyncio client (``None``: memory-only, no calls)."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            call = op.throw(error) if error is not None else op.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        try:
            reply = await _execute_async(call, client)
        except Exception as exc:
            error = exc


async def _pipeline_replies(
    client: aioredis.Redis, calls: tuple[ScriptCall | CommandCall, ...]
) -> list[Any]:
    """Send ``calls`` in one round trip; each reply is a value or the exception for that call."""
    pipe = client.pipeline(transaction=False)
    for sub in calls:
        pipe.execute_command(*_single_args(sub))
    replies: list[Any] = await pipe.execute(raise_on_error=False)
    for i, (sub, rep) in enumerate(zip(calls, replies, strict=True)):
        if isinstance(rep, NoScriptError) and isinstance(sub, ScriptCall):
            try:
                replies[i] = await client.execute_command(*_eval_args(sub))
            except Exception as exc:
                replies[i] = exc
    return replies


async def _execute_async(call: Call, client: aioredis.Redis | AutoPipeline | None) -> Any:
    if client is None:
        raise NoRedisConfigured(f"no Redis client for {call!r}")
    if isinstance(client, AutoPipeline):
        if not isinstance(call, PipelineCall):
            return await client.submit(call)
        client = client.client
    if isinstance(call, PipelineCall):
        replies = await _pipeline_replies(client, call.calls)
        if (err := _first_error(replies)) is not None:
            raise err
        return replies
    if isinstance(call, ScriptCall):
        try:
            return await client.execute_command(*_evalsha_args(call))
        except NoScriptError:
            return await client.execute_command(*_eval_args(call))
    return await client.execute_command(*call.args)


_Pending = tuple[ScriptCall | CommandCall, "asyncio.Future[Any]"]


class AutoPipeline:
    """Sends the single calls that concurrent tasks make in one event-loop turn as one pipeline.

    Under load, many requests each need one script call at the same moment; one round trip and
    one pooled connection for all of them costs far less than one each (ioredis's
    auto-pipelining). A lone call goes out as it is, so an idle server pays nothing.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._queue: list[_Pending] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, call: ScriptCall | CommandCall) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append((call, future))
        return await future

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _send(
        self, batch: list[tuple[ScriptCall | CommandCall, asyncio.Future[Any]]]
    ) -> None:
        try:
            if len(batch) == 1:
                replies: list[Any] = [await _execute_async(batch[0][0], self.client)]
            else:
                replies = await _pipeline_replies(self.client, tuple(c for c, _ in batch))
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            replies = [exc] * len(batch)
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # the caller was cancelled
                continue
            if isinstance(reply, BaseException):
                future.set_exception(reply)
            else:
                future.set_result(reply)
