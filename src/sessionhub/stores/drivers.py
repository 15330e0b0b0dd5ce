"""Run an I/O-free operation (see :mod:`.base`) over a blocking or an asyncio redis-py client.

Every way of reaching Redis is an object whose ``execute(call)`` sends one step of an operation
and returns what the operation is sent back: :class:`HeldConnections` (the blocking hub),
:class:`~.autopipeline.AutoPipeline` (the asyncio hub: the concurrent calls of a whole event
loop pipelined on one connection), :class:`~.cluster.ClusterCalls` and its asyncio twin.
:func:`run_sync` and :func:`run_async` are the two trampolines that feed an operation those
replies; with the round trips below (``_exchange_sync`` / ``_exchange_async``) they are the only
code written twice, once blocking and once awaiting, and are kept mirror images. Everything
they decide without I/O is shared (:mod:`.wire`). One loop for both (a generator that awaits
only when given coroutines, run by ``next()`` or as a coroutine) would add a generator and a
``StopIteration`` to every operation: 0.7-1 % of a read-modify-write request's instructions
(callgrind, Flask and Starlette), for twelve lines.

The round trip packs the calls with hiredis and writes them at once on one redis-py connection,
then reads the replies back in order. That is redis-py's own wire path without its per-command
bookkeeping (pool events, metrics recorders, deprecation wrappers), which cost more than the
round trip on the hot path.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from ..exceptions import NoRedisConfiguredError
from .autopipeline import AutoPipeline
from .base import Call, CallObserver, Op
from .busy import no_connection_free
from .cluster import AsyncClusterCalls, ClusterCalls
from .wire import Single, answer, packed_all, put_back, shaped, singles, to_send_again

T = TypeVar("T")


def _no_redis(call: Call) -> Any:
    raise NoRedisConfiguredError(f"no Redis client for {call!r}")


async def _no_redis_async(call: Call) -> Any:
    return _no_redis(call)


def _shaped_all(
    client: redis.Redis | aioredis.Redis, calls: Sequence[Single], replies: list[Any]
) -> list[Any]:
    return [shaped(client, c, r) for c, r in zip(calls, replies, strict=True)]


# -- blocking ----------------------------------------------------------------------------------


class HeldConnections:
    """Connections of one blocking client, reused without checking each one out of its pool.

    A pool checkout costs a lock, metrics hooks, a deprecation wrapper and a ``poll()`` for stray
    data: a system call and more Python than the exchange itself (profiled). A connection comes
    back here only after a complete exchange, or disconnected, so it never holds stray data.
    The pool still counts every one as in use, so ``pool.disconnect()`` closes them too, and a
    closed one reconnects on its next call. After a fork the child forgets the parent's.

    Once the pool has made ``max_connections``, a thread waits for one to come back (up to the
    socket timeout, see :mod:`.busy`) rather than fail as if Redis were down.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._idle: list[Any] = []
        self._returned = threading.Condition()
        self._waiting = 0
        _ALL_HELD.add(self)

    def take(self) -> Any:
        try:
            return self._idle.pop()  # atomic: no lock needed between threads
        except IndexError:
            pass
        try:
            return self.client.connection_pool.get_connection()
        except redis.MaxConnectionsError:
            return self._wait_for_one()

    def give(self, conn: Any) -> None:
        self._idle.append(conn)
        # A waiter counts itself before its last look at _idle, so it sees this connection or
        # is woken here; while nobody waits, a give costs no lock.
        if self._waiting:
            with self._returned:
                self._returned.notify()

    def _wait_for_one(self) -> Any:
        pool = self.client.connection_pool
        timeout: float | None = pool.connection_kwargs.get("socket_timeout")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._returned:
            self._waiting += 1
            try:
                while True:
                    try:
                        return self._idle.pop()
                    except IndexError:
                        pass
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise no_connection_free(pool.max_connections, timeout)
                    self._returned.wait(left)
            finally:
                self._waiting -= 1

    def execute(self, call: Call) -> Any:
        """Send ``call`` on a held connection: one round trip (two after a script cache flush)."""
        calls = singles(call)
        conn = self.take()
        try:
            replies = _exchange_sync(self.client, conn, calls)
        except BaseException:
            conn.disconnect()  # it may be mid-reply: never reuse it as it is
            raise
        finally:
            self.give(conn)
        return answer(call, replies)


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
    execute: Callable[[Call], Any] = _no_redis if client is None else client.execute
    reply: Any = None
    error: Exception | None = None
    started = 0.0
    while True:
        try:
            call = op.throw(error) if error is not None else op.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        if observer is not None:
            started = time.perf_counter()
        try:
            reply = execute(call)
        except Exception as exc:
            error = exc
        if observer is not None:
            observer.redis_call(call, started, time.perf_counter(), error)


def _exchange_sync(client: redis.Redis, conn: Any, calls: Sequence[Single]) -> list[Any]:
    """Each call's reply, or the error Redis answered it with, in one round trip (two after a
    script cache flush: :func:`~.wire.to_send_again`), on a connection the caller holds."""
    replies = _roundtrip_sync(conn, packed_all(calls), len(calls))
    if resend := to_send_again(calls, replies):
        again = packed_all([calls[i] for i in resend], eval_source=True)
        put_back(replies, resend, _roundtrip_sync(conn, again, len(resend)))
    return _shaped_all(client, calls, replies)


def _roundtrip_sync(conn: Any, data: bytes, n: int) -> list[Any]:
    def attempt() -> list[Any]:
        # connect() itself, not the send's own reconnect, which redials the last address: a
        # Sentinel connection asks the sentinels for the master in connect().
        if not conn.is_connected:
            conn.connect()
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
    execute: Callable[[Call], Awaitable[Any]]
    # Not isinstance(client, aioredis.Redis): a Protocol's isinstance costs a microsecond.
    if isinstance(client, (AutoPipeline, AsyncClusterCalls)):
        execute = client.execute
    elif client is None:
        execute = _no_redis_async
    else:
        execute = partial(_execute_pooled, client)
    reply: Any = None
    error: Exception | None = None
    started = 0.0
    while True:
        try:
            call = op.throw(error) if error is not None else op.send(reply)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        if observer is not None:
            started = time.perf_counter()
        try:
            reply = await execute(call)
        except Exception as exc:
            error = exc
        if observer is not None:
            observer.redis_call(call, started, time.perf_counter(), error)


async def _execute_pooled(client: aioredis.Redis, call: Call) -> Any:
    """Send ``call`` on a connection of the client's pool (a client the auto-pipeline cannot
    use, or one of Django's per-loop clients)."""
    calls = singles(call)
    pool = client.connection_pool
    conn = await pool.get_connection()
    try:
        replies = await _exchange_async(client, conn, calls)
    finally:
        await pool.release(conn)
    return answer(call, replies)


async def _exchange_async(client: aioredis.Redis, conn: Any, calls: Sequence[Single]) -> list[Any]:
    """The mirror image of :func:`_exchange_sync`."""
    replies = await _roundtrip_async(conn, packed_all(calls), len(calls))
    if resend := to_send_again(calls, replies):
        again = packed_all([calls[i] for i in resend], eval_source=True)
        put_back(replies, resend, await _roundtrip_async(conn, again, len(resend)))
    return _shaped_all(client, calls, replies)


async def _roundtrip_async(conn: Any, data: bytes, n: int) -> list[Any]:
    async def attempt() -> list[Any]:
        if not conn.is_connected:  # see _roundtrip_sync
            await conn.connect()
        await conn.send_packed_command([data], check_health=False)
        return [await _read_async(conn) for _ in range(n)]

    return await conn.retry.call_with_retry(attempt, lambda _err: conn.disconnect())  # type: ignore[no-any-return]


async def _read_async(conn: Any) -> Any:
    try:
        return await conn.read_response()
    except ResponseError as exc:  # Redis refused this call; the connection is still in step
        return exc
