"""Run an I/O-free operation (see :mod:`.base`) over a blocking or an asyncio redis-py client.

These two functions are the only place where sync and async code differ; keep them mirror images.
"""

from __future__ import annotations

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


async def run_async(op: Op[T], client: aioredis.Redis | None) -> T:
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


async def _execute_async(call: Call, client: aioredis.Redis | None) -> Any:
    if client is None:
        raise NoRedisConfigured(f"no Redis client for {call!r}")
    if isinstance(call, PipelineCall):
        pipe = client.pipeline(transaction=False)
        for sub in call.calls:
            pipe.execute_command(*_single_args(sub))
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        for i, (sub, rep) in enumerate(zip(call.calls, replies, strict=True)):
            if isinstance(rep, NoScriptError) and isinstance(sub, ScriptCall):
                replies[i] = await client.execute_command(*_eval_args(sub))
        if (err := _first_error(replies)) is not None:
            raise err
        return replies
    if isinstance(call, ScriptCall):
        try:
            return await client.execute_command(*_evalsha_args(call))
        except NoScriptError:
            return await client.execute_command(*_eval_args(call))
    return await client.execute_command(*call.args)
