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
API.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

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
        method, ops, mode = self.method, front._ops, front._mode
        call: Callable[P, Any]
        if isinstance(mode, Blocking):
            run_sync: SyncRunner = mode.run

            def call(*args: P.args, **kwargs: P.kwargs) -> T:
                return run_sync(method(ops, *args, **kwargs))

        else:
            run_async: AsyncRunner = mode.run

            async def call(*args: P.args, **kwargs: P.kwargs) -> T:
                return await run_async(method(ops, *args, **kwargs))

        functools.update_wrapper(call, method)
        # Cached on the instance (this is a non-data descriptor): later look-ups are a dict hit.
        front.__dict__[self.name] = call
        return call
