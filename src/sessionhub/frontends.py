"""One typed mechanism that turns I/O-free operations into blocking or awaitable methods.

An operation class (:class:`~sessionhub.manager.SessionManager`, each feature's ``...Ops``) holds
methods that return an :data:`~sessionhub.stores.base.Op`. A front end declares once which of
them it offers; the mode it is built with decides how they run::

    class Inbox(Front[InboxOps, M]):
        send = operation(InboxOps.send)

    Inbox(ops, Blocking(hub.run)).send(...)          # -> dict[str, Any]
    await Inbox(ops, Awaiting(hub.run)).send(...)    # -> dict[str, Any]

The descriptor keeps each operation's parameters (a ``ParamSpec``) and result type, so strict
mypy checks every call in either mode. Nothing else differs between the blocking and the asyncio
API but waiting: :func:`pauses` is the one schedule, slept by :func:`run_retried` and
:func:`arun_retried` (an operation that raises :class:`ConflictError` runs again) and by the
session locks.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

from .exceptions import ConflictError
from .stores.base import Op

O = TypeVar("O")  # noqa: E741 - the operations object, as in Generic[O]
P = ParamSpec("P")
T = TypeVar("T")


class SyncRunner(Protocol):
    """Runs an operation to completion, blocking."""

    def __call__(self, op: Op[T], /) -> T: ...


class AsyncRunner(Protocol):
    """Runs an operation to completion on the running event loop."""

    def __call__(self, op: Op[T], /) -> Awaitable[T]: ...


FIRST_PAUSE = 0.002
MAX_PAUSE = 0.05
RETRY_PATIENCE = 10.0
"""Seconds an operation that lost to concurrent writers (:class:`ConflictError`) is retried."""


def pauses(limit: float) -> Iterator[float]:
    """The pauses, in seconds, of a wait that gives up after ``limit`` seconds: growing from
    2 ms to 50 ms, each a random part of its step, so that waiters who collided once (tasks
    resumed in the same order every time) do not collide again. Ends when the next would pass
    the limit."""
    deadline = time.monotonic() + limit
    step = FIRST_PAUSE
    while True:
        pause = random.uniform(step / 2, step)
        if time.monotonic() + pause > deadline:
            return
        yield pause
        step = min(step * 2, MAX_PAUSE)


def run_retried(run: SyncRunner, attempt: Callable[[], Op[T]], patience: float) -> T:
    """``run(attempt())``, again after a pause each time it raises :class:`ConflictError`, for
    up to ``patience`` seconds (then that error)."""
    waits = pauses(patience)
    while True:
        try:
            return run(attempt())
        except ConflictError:
            pause = next(waits, None)
            if pause is None:
                raise
            time.sleep(pause)


async def arun_retried(run: AsyncRunner, attempt: Callable[[], Op[T]], patience: float) -> T:
    """:func:`run_retried` on the running event loop."""
    waits = pauses(patience)
    while True:
        try:
            return await run(attempt())
        except ConflictError:
            pause = next(waits, None)
            if pause is None:
                raise
            await asyncio.sleep(pause)


class Blocking:
    """The mode of a front end whose methods block until their operation is done."""

    def __init__(self, run: SyncRunner) -> None:
        self.run = run


class Awaiting:
    """The mode of a front end whose methods are coroutines."""

    def __init__(self, run: AsyncRunner) -> None:
        self.run = run


M = TypeVar("M", Blocking, Awaiting)


class Front(Generic[O, M]):
    """Methods over an operations object, run the way ``mode`` says (see :class:`operation`)."""

    def __init__(self, ops: O, mode: M) -> None:
        self._ops = ops
        self._mode: M = mode


class operation(Generic[O, P, T]):
    """``Callable[[O, *P], Op[T]]`` as a method of a :class:`Front`.

    On a blocking front end it is ``Callable[P, T]``, on an awaiting one ``async (*P) -> T``.
    """

    def __init__(self, method: Callable[Concatenate[O, P], Op[T]]) -> None:
        self.method = method
        self.name = method.__name__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, front: None, owner: type) -> operation[O, P, T]: ...

    @overload
    def __get__(self, front: Front[O, Blocking], owner: type) -> Callable[P, T]: ...

    @overload
    def __get__(self, front: Front[O, Awaiting], owner: type) -> Callable[P, Awaitable[T]]: ...

    def __get__(self, front: Front[O, Any] | None, owner: type) -> Any:
        if front is None:
            return self
        call = self._bound(front._ops, front._mode)
        functools.update_wrapper(call, self.method)
        # Cached on the instance (this is a non-data descriptor): later look-ups are a dict hit.
        front.__dict__[self.name] = call
        return call

    def _bound(self, ops: O, mode: Blocking | Awaiting) -> Callable[P, Any]:
        method = self.method
        if isinstance(mode, Blocking):
            run_sync: SyncRunner = mode.run

            def call(*args: P.args, **kwargs: P.kwargs) -> T:
                return run_sync(method(ops, *args, **kwargs))

            return call
        run_async: AsyncRunner = mode.run

        async def acall(*args: P.args, **kwargs: P.kwargs) -> T:
            return await run_async(method(ops, *args, **kwargs))

        return acall


class retried(operation[O, P, T]):
    """An :class:`operation` that may lose to concurrent writers (:class:`ConflictError`, after
    its own immediate retries): the front end pauses and runs it again, for up to
    :data:`RETRY_PATIENCE` seconds."""

    def _bound(self, ops: O, mode: Blocking | Awaiting) -> Callable[P, Any]:
        method, patience = self.method, RETRY_PATIENCE
        if isinstance(mode, Blocking):
            run_sync: SyncRunner = mode.run

            def call(*args: P.args, **kwargs: P.kwargs) -> T:
                attempt = functools.partial(method, ops, *args, **kwargs)
                return run_retried(run_sync, attempt, patience)

            return call
        run_async: AsyncRunner = mode.run

        async def acall(*args: P.args, **kwargs: P.kwargs) -> T:
            attempt = functools.partial(method, ops, *args, **kwargs)
            return await arun_retried(run_async, attempt, patience)

        return acall
