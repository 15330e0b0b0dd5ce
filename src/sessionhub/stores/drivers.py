"""Run an I/O-free operation (see :mod:`.base`) over a blocking or an asyncio redis-py client.

``run_sync`` and ``run_async`` are the only place where sync and async code differ; keep them
mirror images. Both send calls through :func:`_roundtrip_sync` / :func:`_roundtrip_async`: the
calls packed with hiredis and written at once on one redis-py connection, the replies read back
in order. That is redis-py's own wire path without its per-command bookkeeping (pool events,
metrics recorders, deprecation wrappers), which cost more than the round trip on the hot path.
The asyncio hub sends its calls through :class:`~.autopipeline.AutoPipeline` instead, which
pipelines the concurrent calls of a whole event loop on one connection; the blocking hub takes
its connections from a :class:`HeldConnections`.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ..exceptions import NoRedisConfiguredError
from .autopipeline import AutoPipeline
from .base import Call, CallObserver, Op, PipelineCall
from .cluster import AsyncClusterCalls, ClusterCalls
from .wire import Single, needs_eval, packed, packed_all, shaped

T = TypeVar("T")


def _first_error(replies: list[Any]) -> Exception | None:
    return next((r for r in replies if isinstance(r, Exception)), None)


def _eval_retry(calls: Sequence[Single], replies: list[Any]) -> tuple[list[int], bytes]:
    """Positions of script calls Redis did not have cached, and those calls packed as EVAL."""
    if _first_error(replies) is None:  # the usual case, on every call: nothing to look at
        return [], b""
    missing = [i for i, (c, r) in enumerate(zip(calls, replies, strict=True)) if needs_eval(c, r)]
    return missing, b"".join(packed(calls[i], eval_source=True) for i in missing)


# -- blocking ----------------------------------------------------------------------------------


class HeldConnections:
    """Connections of one blocking client, reused without checking each one out of its pool.

    A pool checkout costs a lock, metrics hooks, a deprecation wrapper and a ``poll()`` for stray
    data: a system call and more Python than the exchange itself (profiled). A connection comes
    back here only after a complete exchange, or disconnected, so it never holds stray data.
    The pool still counts every one as in use, so ``pool.disconnect()`` closes them too, and a
    closed one reconnects on its next call. After a fork the child forgets the parent's.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._idle: list[Any] = []
        _ALL_HELD.add(self)

    def take(self) -> Any:
        try:
            return self._idle.pop()  # atomic: no lock needed between threads
        except IndexError:
            return self.client.connection_pool.get_connection()

    def give(self, conn: Any) -> None:
        self._idle.append(conn)


_ALL_HELD: weakref.WeakSet[HeldConnections] = weakref.WeakSet()


def _forget_after_fork() -> None:
    # The parent's sockets are not the child's to use; its pool makes the child new ones.
    for held in list(_ALL_HELD):
        held._idle = []


os.register_at_fork(after_in_child=_forget_after_fork)


def run_sync(
    op: Op[T], client: HeldConnections | ClusterCalls | None, observer: CallObserver | None = None
) -> T:
    """Drive ``op`` to completion with a blocking client (``None``: memory-only, no calls),
    telling ``observer`` of each call."""
    reply: Any = None
    error: Exception | None = None
    started = 0.0
    execute: Callable[[Call, Any], Any] = (
        _execute_cluster_sync if isinstance(client, ClusterCalls) else _execute_sync
    )
    while True:
        try:
            call = op.throw(error) if error is not None else op.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        if observer is not None:
            started = time.perf_counter()
        try:
            reply = execute(call, client)
        except Exception as exc:
            error = exc
        if observer is not None:
            observer.redis_call(call, started, time.perf_counter(), error)


def _execute_cluster_sync(call: Call, calls: Any) -> Any:
    return calls.execute(call)


def _execute_sync(call: Call, held: HeldConnections | None) -> Any:
    if held is None:
        raise NoRedisConfiguredError(f"no Redis client for {call!r}")
    calls = call.calls if isinstance(call, PipelineCall) else (call,)
    conn = held.take()
    try:
        replies = _calls_sync(held.client, conn, calls)
    except BaseException:
        conn.disconnect()  # it may be mid-reply: never reuse it as it is
        raise
    finally:
        held.give(conn)
    if (err := _first_error(replies)) is not None:
        raise err
    return replies if isinstance(call, PipelineCall) else replies[0]


def _calls_sync(client: redis.Redis, conn: Any, calls: Sequence[Single]) -> list[Any]:
    """Each call's reply, or the error Redis answered it with, in one round trip (two after a
    script cache flush), on a connection the caller holds."""
    replies = _roundtrip_sync(conn, packed_all(calls), len(calls))
    missing, again = _eval_retry(calls, replies)
    if missing:
        for i, reply in zip(missing, _roundtrip_sync(conn, again, len(missing)), strict=True):
            replies[i] = reply
    return [shaped(client, c, r) for c, r in zip(calls, replies, strict=True)]


def _roundtrip_sync(conn: Any, data: bytes, n: int) -> list[Any]:
    def attempt() -> list[Any]:
        conn.send_packed_command([data], check_health=False)
        return [_read_sync(conn) for _ in range(n)]

    return conn.retry.call_with_retry(attempt, lambda _err: conn.disconnect())  # type: ignore[no-any-return]


def _read_sync(conn: Any) -> Any:
    try:
        return conn.read_response()
    except ResponseError as exc:  # Redis refused this call; the connection is still in step
        return exc


# -- asyncio -----------------------------------------------------------------------------------


async def run_async(
    op: Op[T],
    client: aioredis.Redis | AutoPipeline | AsyncClusterCalls | None,
    observer: CallObserver | None = None,
) -> T:
    """Drive ``op`` to completion with an asyncio client (``None``: memory-only, no calls),
    telling ``observer`` of each call."""
    reply: Any = None
    error: Exception | None = None
    started = 0.0
    cluster = client if isinstance(client, AsyncClusterCalls) else None
    while True:
        try:
            call = op.throw(error) if error is not None else op.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        if observer is not None:
            started = time.perf_counter()
        try:
            if cluster is not None:
                reply = await cluster.execute(call)
            else:
                reply = await _execute_async(call, client)  # type: ignore[arg-type]
        except Exception as exc:
            error = exc
        if observer is not None:
            observer.redis_call(call, started, time.perf_counter(), error)


async def _execute_async(call: Call, client: aioredis.Redis | AutoPipeline | None) -> Any:
    if client is None:
        raise NoRedisConfiguredError(f"no Redis client for {call!r}")
    calls = call.calls if isinstance(call, PipelineCall) else (call,)
    if isinstance(client, AutoPipeline):
        if not isinstance(call, PipelineCall):
            return await client.submit(call)
        replies = await client.submit_all(calls)
    else:
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
    """The mirror image of :func:`_calls_sync`."""
    replies = await _roundtrip_async(conn, packed_all(calls), len(calls))
    missing, again = _eval_retry(calls, replies)
    if missing:
        for i, reply in zip(
            missing, await _roundtrip_async(conn, again, len(missing)), strict=True
        ):
            replies[i] = reply
    return [shaped(client, c, r) for c, r in zip(calls, replies, strict=True)]


async def _roundtrip_async(conn: Any, data: bytes, n: int) -> list[Any]:
    async def attempt() -> list[Any]:
        await conn.send_packed_command([data], check_health=False)
        return [await _read_async(conn) for _ in range(n)]

    return await conn.retry.call_with_retry(attempt, lambda _err: conn.disconnect())  # type: ignore[no-any-return]


async def _read_async(conn: Any) -> Any:
    try:
        return await conn.read_response()
    except ResponseError as exc:  # Redis refused this call; the connection is still in step
        return exc
