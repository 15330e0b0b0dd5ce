"""Run an I/O-free operation (see :mod:`.base`) over a blocking or an asyncio redis-py client.

``run_sync`` and ``run_async`` are the only place where sync and async code differ; keep them
mirror images. Both send calls through :func:`_roundtrip_sync` / :func:`_roundtrip_async`: the
calls packed with hiredis and written at once on one redis-py connection, the replies read back
in order. That is redis-py's own wire path without its per-command bookkeeping (pool events,
metrics recorders, deprecation wrappers), which cost more than the round trip on the hot path.
:class:`AutoPipeline` batches the asyncio side's concurrent calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from hiredis import pack_command
from redis.exceptions import NoScriptError, ResponseError

from ..exceptions import StoreError
from .base import Call, CommandCall, Op, PipelineCall, ScriptCall

T = TypeVar("T")

Single = ScriptCall | CommandCall

AUTOPIPELINE_CONNECTIONS = 4
"""Batches an :class:`AutoPipeline` keeps in flight at once, one dedicated connection each."""


def _evalsha_args(call: ScriptCall) -> tuple[Any, ...]:
    return ("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)


def _eval_args(call: ScriptCall) -> tuple[Any, ...]:
    return ("EVAL", call.script.source, len(call.keys), *call.keys, *call.args)


def _pack(calls: Sequence[Single]) -> bytes:
    return b"".join(
        _packed(_evalsha_args(c) if isinstance(c, ScriptCall) else c.args) for c in calls
    )


def _packed(args: tuple[Any, ...]) -> bytes:
    packed: bytes = pack_command(args)
    return packed


def _parsed(client: redis.Redis | aioredis.Redis, call: Single, reply: Any) -> Any:
    """A reply as redis-py's ``execute_command`` would return it (its response callback)."""
    if isinstance(call, ScriptCall) or isinstance(reply, Exception):
        return reply
    callback = client.response_callbacks.get(str(call.args[0]).upper())
    return reply if callback is None else callback(reply)


def _first_error(replies: list[Any]) -> Exception | None:
    return next((r for r in replies if isinstance(r, Exception)), None)


def _eval_retry(calls: Sequence[Single], replies: list[Any]) -> tuple[list[int], bytes]:
    """Positions of script calls Redis did not have cached (after a restart or a flush), and
    those calls packed as ``EVAL`` with the source."""
    missing: list[int] = []
    packed: list[bytes] = []
    for i, (call, reply) in enumerate(zip(calls, replies, strict=True)):
        if isinstance(reply, NoScriptError) and isinstance(call, ScriptCall):
            missing.append(i)
            packed.append(_packed(_eval_args(call)))
    return missing, b"".join(packed)


class NoRedisConfigured(StoreError):
    """A memory-only store was asked to reach Redis (a bug in the operation)."""


# -- blocking ----------------------------------------------------------------------------------


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
    calls = call.calls if isinstance(call, PipelineCall) else (call,)
    replies = _calls_sync(client, calls)
    if (err := _first_error(replies)) is not None:
        raise err
    return replies if isinstance(call, PipelineCall) else replies[0]


def _calls_sync(client: redis.Redis, calls: Sequence[Single]) -> list[Any]:
    """Each call's reply, or the error Redis answered it with, in one round trip (two after a
    script cache flush)."""
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        replies = _roundtrip_sync(conn, _pack(calls), len(calls))
        missing, packed = _eval_retry(calls, replies)
        if missing:
            for i, reply in zip(missing, _roundtrip_sync(conn, packed, len(missing)), strict=True):
                replies[i] = reply
    finally:
        pool.release(conn)
    return [_parsed(client, c, r) for c, r in zip(calls, replies, strict=True)]


def _roundtrip_sync(conn: Any, packed: bytes, n: int) -> list[Any]:
    def attempt() -> list[Any]:
        conn.send_packed_command([packed], check_health=False)
        return [_read_sync(conn) for _ in range(n)]

    return conn.retry.call_with_retry(attempt, lambda _err: conn.disconnect())  # type: ignore[no-any-return]


def _read_sync(conn: Any) -> Any:
    try:
        return conn.read_response()
    except ResponseError as exc:  # Redis refused this call; the connection is still in step
        return exc


# -- asyncio -----------------------------------------------------------------------------------


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


async def _execute_async(call: Call, client: aioredis.Redis | AutoPipeline | None) -> Any:
    if client is None:
        raise NoRedisConfigured(f"no Redis client for {call!r}")
    if isinstance(client, AutoPipeline):
        if not isinstance(call, PipelineCall):
            return await client.submit(call)
        client = client.client
    calls = call.calls if isinstance(call, PipelineCall) else (call,)
    pool = client.connection_pool
    conn = await pool.get_connection()
    try:
        replies = await _calls_async(client, conn, calls)
    finally:
        await pool.release(conn)
    if (err := _first_error(replies)) is not None:
        raise err
    return replies if isinstance(call, PipelineCall) else replies[0]


async def _calls_async(client: aioredis.Redis, conn: Any, calls: Sequence[Single]) -> list[Any]:
    """The mirror image of :func:`_calls_sync`, on a connection the caller holds."""
    replies = await _roundtrip_async(conn, _pack(calls), len(calls))
    missing, packed = _eval_retry(calls, replies)
    if missing:
        again = await _roundtrip_async(conn, packed, len(missing))
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    return [_parsed(client, c, r) for c, r in zip(calls, replies, strict=True)]


async def _roundtrip_async(conn: Any, packed: bytes, n: int) -> list[Any]:
    async def attempt() -> list[Any]:
        await conn.send_packed_command([packed], check_health=False)
        return [await _read_async(conn) for _ in range(n)]

    return await conn.retry.call_with_retry(attempt, lambda _err: conn.disconnect())  # type: ignore[no-any-return]


async def _read_async(conn: Any) -> Any:
    try:
        return await conn.read_response()
    except ResponseError as exc:  # Redis refused this call; the connection is still in step
        return exc


_Pending = tuple[Single, "asyncio.Future[Any]"]


class AutoPipeline:
    """Sends the single calls that concurrent tasks make meanwhile as one pipeline.

    Under load, many requests each need one script call at the same moment; one round trip for
    all of them costs far less than one each (ioredis's auto-pipelining). Calls queue while
    ``AUTOPIPELINE_CONNECTIONS`` batches are in flight, and go out together on the first
    connection that comes back; a lone call on an idle server goes out at once. The connections
    are the pool's kind (same address, auth, TLS and timeouts) but held here, outside the pool.
    """

    def __init__(self, client: aioredis.Redis, connections: int = AUTOPIPELINE_CONNECTIONS) -> None:
        self.client = client
        self._all = [client.connection_pool.make_connection() for _ in range(connections)]
        self._idle = list(self._all)
        self._queue: list[_Pending] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, call: Single) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append((call, future))
        return await future

    def _flush(self) -> None:
        if not self._queue or not self._idle:
            return  # a batch in flight flushes the queue when it comes back
        conn = self._idle.pop()
        batch, self._queue = self._queue, []
        task = asyncio.get_running_loop().create_task(self._send(conn, batch))
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _send(self, conn: Any, batch: list[_Pending]) -> None:
        try:
            replies = await _calls_async(self.client, conn, [c for c, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            replies = [exc] * len(batch)
        finally:
            self._idle.append(conn)
            self._flush()
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # the caller was cancelled
                continue
            if isinstance(reply, BaseException):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def disconnect(self) -> None:
        """Close the held connections (they reconnect on next use)."""
        for conn in self._all:
            await conn.disconnect()
