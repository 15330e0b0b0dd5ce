"""Auto-pipelining for asyncio: every concurrent call of an event loop on one Redis connection.

Calls are queued as tasks make them; once per loop turn the queue goes to Redis in one write,
and replies are matched to their callers in order as they arrive (ioredis's auto-pipelining).
No batch waits for another, there is no task per batch and no timer per reply: one
``data_received`` resolves every caller whose reply it holds.

The connection is made from the redis-py client's own settings (host and port or socket path,
TLS, username, password, database, timeouts), so both speak to the same server the same way.
On Sentinel (a client of ``Sentinel.master_for``) each connect asks the sentinels for the master,
as redis-py's own sentinel connections do; a reply of ``READONLY`` (the master was demoted to a
replica) drops the connection like a lost one, so the next connect asks again and a replica is
never written to. A burst of concurrent calls needs no more connections than one.
A reply later than ``socket_timeout`` closes the connection and fails every call in flight with
``redis.TimeoutError``; a lost connection fails them with ``redis.ConnectionError``. To the
resilient core both mean "Redis is down". The next call reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis
import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
from redis._parsers.base import BaseParser
from redis.exceptions import InvalidResponse, NoScriptError

from .base import Call, CommandCall, PipelineCall
from .wire import Single, answer, packed, put_back, shaped, to_send_again

_SUPPORTED = (
    aioredis.Connection,
    aioredis.SSLConnection,
    aioredis.UnixDomainSocketConnection,
    aiosentinel.SentinelManagedConnection,
    aiosentinel.SentinelManagedSSLConnection,
)

# call, its caller's future, whether a script goes as EVAL, when it was written
_Pending = tuple[Single, "asyncio.Future[Any]", bool, float]


class _Link(asyncio.Protocol):
    """One TCP/unix connection; forwards its events to its pipeline while it is the current one."""

    def __init__(self, owner: AutoPipeline) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have write() and abort() but do not subclass asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.owner._link is self:
            self.owner._on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.owner._link is self:
            self.owner._on_lost(exc)


class AutoPipeline:
    """Sends the calls of concurrent tasks on one pipelined connection (see the module)."""

    @staticmethod
    def supports(client: aioredis.Redis) -> bool:
        """Whether the client's connection settings are ones this class knows how to use."""
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        if isinstance(pool, aiosentinel.SentinelConnectionPool) and not pool.is_master:
            return False  # the sessions are written: only a master will do
        return (
            pool.connection_class in _SUPPORTED
            and kwargs.get("credential_provider") is None
            and kwargs.get("protocol") in (None, 2, "2")
        )

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        kwargs = client.connection_pool.connection_kwargs
        self._kwargs = kwargs
        pool = client.connection_pool
        self._sentinel = pool if isinstance(pool, aiosentinel.SentinelConnectionPool) else None
        self._peer: tuple[str, int] | None = None
        """The server the current (or last) connection went to."""
        self._timeout: float | None = kwargs.get("socket_timeout") or None
        self._connect_timeout: float | None = kwargs.get("socket_connect_timeout") or self._timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._link: _Link | None = None
        self._ready = False  # connected and past AUTH/SELECT
        self._connecting: asyncio.Task[None] | None = None
        self._reader = self._new_reader()
        self._queue: list[_Pending] = []
        self._inflight: deque[_Pending] = deque()
        self._flush_scheduled = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._refusal: redis.ConnectionError | None = None
        """Why Redis closed a connection it had just accepted, when it said so."""

    def _new_reader(self) -> hiredis.Reader:
        if self._kwargs.get("decode_responses"):
            return hiredis.Reader(
                protocolError=InvalidResponse,
                replyError=BaseParser.parse_error,
                encoding=self._kwargs.get("encoding", "utf-8"),
                errors=self._kwargs.get("encoding_errors", "strict"),
            )
        return hiredis.Reader(protocolError=InvalidResponse, replyError=BaseParser.parse_error)

    # -- calls ----------------------------------------------------------------------------------

    def _queued(self, call: Single, *, eval_source: bool = False) -> asyncio.Future[Any]:
        """Queue ``call`` on the running loop; the future its raw reply will resolve."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._adopt(loop)
        future: asyncio.Future[Any] = loop.create_future()
        self._enqueue((call, future, eval_source, 0.0))
        return future

    async def execute(self, call: Call) -> Any:
        """One step of an operation (see :mod:`.drivers`): its reply, or a pipeline's replies.

        A single call is sent with whatever else is queued this loop turn, its reply shaped;
        written here rather than calling :meth:`submit`, whose extra coroutine every call of
        every request would pay for."""
        if isinstance(call, PipelineCall):
            return answer(call, await self.submit_all(call.calls))
        try:
            return shaped(self.client, call, await self._queued(call))
        except NoScriptError as exc:
            return answer(call, await self.sent_again((call,), [exc]))

    submit = execute
    """Send one call with whatever else is queued this loop turn; its reply, shaped."""

    async def submit_all(self, calls: Sequence[Single]) -> list[Any]:
        """Send ``calls`` back to back in the same way; each reply shaped, or the error it got.

        Like a pipeline, not a transaction: other tasks' calls may run between them.
        """
        return await self.sent_again(calls, await self.replies(calls, self.queue(calls)))

    async def sent_again(self, calls: Sequence[Single], replies: list[Any]) -> list[Any]:
        """``replies`` once the calls :func:`~.wire.to_send_again` names (after a script cache
        flush) were sent again, back to back, scripts as ``EVAL``."""
        if again := to_send_again(calls, replies):
            resent = [calls[i] for i in again]
            futures = self.queue(resent, eval_source=True)
            put_back(replies, again, await self.replies(resent, futures))
        return replies

    def queue(
        self, calls: Sequence[Single], *, eval_source: bool = False
    ) -> list[asyncio.Future[Any]]:
        """Queue ``calls`` back to back, adjacent on the wire, without waiting: several
        pipelines' calls are queued in the same loop turn, then :meth:`replies` awaited. With
        ``eval_source`` scripts go as ``EVAL`` with their source; a ``NOSCRIPT`` is the caller's
        to handle (:meth:`sent_again`)."""
        return [self._queued(call, eval_source=eval_source) for call in calls]

    async def replies(
        self, calls: Sequence[Single], futures: list[asyncio.Future[Any]]
    ) -> list[Any]:
        """The replies of calls :meth:`queue` made ``futures`` of: each shaped, or its error."""
        # Replies arrive in order, usually in one read: after the first wait the rest are done.
        # Every future is awaited, so none is left with an exception nobody retrieved.
        replies: list[Any] = []
        try:
            for call, future in zip(calls, futures, strict=True):
                try:
                    replies.append(shaped(self.client, call, await future))
                except redis.RedisError as exc:
                    replies.append(exc)
        except BaseException:  # the caller was cancelled: nobody will read the rest
            for future in futures:
                future.cancel()
            raise
        return replies

    def _enqueue(self, pending: _Pending) -> None:
        self._queue.append(pending)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._on_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._queue:
            return
        if not self._ready:
            if self._connecting is None:
                self._connecting = self._on_loop().create_task(self._connect())
            return  # the connect flushes the queue, or fails it
        batch, self._queue = self._queue, []
        self._write(batch)

    def _write(self, batch: list[_Pending]) -> None:
        """Put ``batch`` on the wire in one write; replies come back in this order."""
        loop = self._on_loop()
        link = self._link
        assert link is not None
        assert link.transport is not None
        now = loop.time()
        self._inflight.extend((call, future, again, now) for call, future, again, _ in batch)
        link.transport.write(b"".join(packed(c, eval_source=again) for c, _, again, _ in batch))
        if self._watchdog is None and self._timeout is not None:
            self._watchdog = loop.call_later(self._timeout, self._check_timeout)

    def _on_loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "used before submit() bound it to a loop"
        return self._loop

    def _check_timeout(self) -> None:
        self._watchdog = None
        if not self._inflight or self._timeout is None:
            return
        waited = self._on_loop().time() - self._inflight[0][3]
        if waited >= self._timeout:
            self._drop(redis.TimeoutError(f"Timeout reading from {self._address()}"))
        else:
            self._watchdog = self._on_loop().call_later(self._timeout - waited, self._check_timeout)

    # -- replies --------------------------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            if not self._inflight:
                if isinstance(reply, redis.ConnectionError):
                    self._refusal = reply  # said before any call: "max number of clients reached"
                break  # a reply nobody waits for: the connection was dropped meanwhile
            _, future, _, _ = self._inflight.popleft()
            if self._sentinel is not None and isinstance(reply, redis.ReadOnlyError):
                demoted = redis.ConnectionError(
                    f"{self._address()} answered READONLY: it is a replica now; the sentinels "
                    "are asked for the master on the next connect"
                )
                if not future.done():
                    future.set_exception(demoted)
                self._drop(demoted)  # and every call after it: they were sent to a replica
                break
            elif future.done():  # the caller was cancelled
                continue
            elif isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def _on_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        refusal, self._refusal = self._refusal, None
        self._drop(
            refusal or redis.ConnectionError(f"Connection to {self._address()} lost{reason}")
        )
        if self._queue and not self._flush_scheduled:
            self._flush_scheduled = True
            self._on_loop().call_soon(self._flush)

    # -- connection -----------------------------------------------------------------------------

    def _address(self) -> str:
        kw = self._kwargs
        if kw.get("path"):
            return str(kw["path"])
        host, port = self._peer or (kw.get("host", "localhost"), kw.get("port", 6379))
        return f"{host}:{port}"

    async def _server(self) -> tuple[str, int]:
        """Where to connect: the master the sentinels name now, else the configured server."""
        if self._sentinel is not None:
            host, port = await self._sentinel.get_master_address()  # type: ignore[no-untyped-call]
            return str(host), int(port)
        return self._kwargs.get("host", "localhost"), int(self._kwargs.get("port", 6379))

    async def _connect(self) -> None:
        self._refusal = None
        try:
            try:
                self._link = _Link(self)
                if not self._kwargs.get("path"):
                    # Asking the sentinels is bounded by their own socket timeouts.
                    self._peer = await self._server()
                await asyncio.wait_for(self._open(self._link), self._connect_timeout)
                await self._handshake()
                self._ready = True
            except (OSError, asyncio.TimeoutError) as exc:
                detail = str(exc) or type(exc).__name__
                message = f"Error connecting to {self._address()}: {detail}"
                raise redis.ConnectionError(message) from exc
        except redis.RedisError as exc:  # not only ConnectionError: a caller must never hang
            self._drop(exc)
            self._fail_queue(exc)
        finally:
            self._connecting = None
        self._flush()

    async def _open(self, link: _Link) -> None:
        loop, kw = self._on_loop(), self._kwargs
        if kw.get("path"):
            await loop.create_unix_connection(lambda: link, kw["path"])
            return
        context: ssl.SSLContext | None = None
        if issubclass(self.client.connection_pool.connection_class, aioredis.SSLConnection):
            conn = self.client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
            context = conn.ssl_context.get()
        assert self._peer is not None
        host, port = self._peer
        await loop.create_connection(lambda: link, host, port, ssl=context)

    async def _handshake(self) -> None:
        """AUTH and SELECT as redis-py does, before any queued call goes out."""
        kw = self._kwargs
        steps: list[tuple[Any, ...]] = []
        if kw.get("password") is not None:
            user = kw.get("username")
            steps.append(("AUTH", user, kw["password"]) if user else ("AUTH", kw["password"]))
        if kw.get("db"):
            steps.append(("SELECT", kw["db"]))
        if not steps:
            return
        futures = [self._on_loop().create_future() for _ in steps]
        self._write([(CommandCall(a), f, True, 0.0) for a, f in zip(steps, futures, strict=True)])
        for future in futures:
            try:
                await asyncio.wait_for(future, self._timeout)
            except redis.ConnectionError:
                raise
            except redis.RedisError as exc:
                raise redis.AuthenticationError(f"{exc}") from exc

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start over on another event loop: transports and futures belong to one loop."""
        old, link = self._loop, self._link
        if old is not None and not old.is_closed() and link is not None and link.transport:
            old.call_soon_threadsafe(link.transport.abort)
        self._link = None
        self._ready = False
        self._connecting = None
        self._watchdog = None
        self._queue = []
        self._inflight.clear()
        self._reader = self._new_reader()
        self._loop = loop

    def _drop(self, error: Exception) -> None:
        """Close the connection and fail every call written on it."""
        link, self._link = self._link, None
        self._ready = False
        if link is not None and link.transport is not None:
            link.transport.abort()
        self._fail_inflight(error)

    def _fail_inflight(self, error: Exception) -> None:
        self._reader = self._new_reader()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        inflight, self._inflight = self._inflight, deque()
        for _, future, _, _ in inflight:
            if not future.done():
                future.set_exception(error)

    def _fail_queue(self, error: Exception) -> None:
        queue, self._queue = self._queue, []
        for _, future, _, _ in queue:
            if not future.done():
                future.set_exception(error)

    async def disconnect(self) -> None:
        """Close the connection (the next call reconnects); calls in flight fail."""
        # A connect still under way is cancelled and waited for: left pending when its loop
        # closes, it is torn down by the garbage collector later, mid-connect, and complains.
        task = self._connecting
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._drop(redis.ConnectionError(f"Connection to {self._address()} closed"))
        self._fail_queue(redis.ConnectionError(f"Connection to {self._address()} closed"))
