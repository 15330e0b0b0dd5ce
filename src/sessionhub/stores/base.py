"""The I/O-free core of every store operation, shared by the sync and asyncio front ends.

An operation is a generator: it yields the Redis calls it needs (:class:`ScriptCall`,
:class:`CommandCall`, :class:`PipelineCall`), receives each reply (or the exception the call
raised, thrown into it), and returns its result. :mod:`sessionhub.stores.drivers` runs the same
generator over a blocking or an asyncio Redis client, so the logic exists exactly once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

Arg = str | int | float | bytes


@dataclass(frozen=True)
class LuaScript:
    """A Lua script shipped with the package, called by SHA with a fallback to EVAL."""

    name: str
    source: str
    sha: str = field(init=False)
    """Redis's id for the script (SHA-1 of the source), computed once: it is on every call."""

    def __post_init__(self) -> None:
        sha = hashlib.sha1(self.source.encode()).hexdigest()  # noqa: S324 - Redis's script id
        object.__setattr__(self, "sha", sha)

    @classmethod
    def load(cls, name: str, *helpers: str) -> LuaScript:
        """``lua/<name>.lua``, after the shared local functions of ``lua/_<helper>.lua``."""
        lua = resources.files("sessionhub.stores").joinpath("lua")
        parts = [lua.joinpath(f"_{h}.lua").read_text() for h in helpers]
        return cls(name, "".join([*parts, lua.joinpath(f"{name}.lua").read_text()]))


@dataclass(frozen=True)
class ScriptCall:
    """Run a Lua script atomically (one round trip)."""

    script: LuaScript
    keys: tuple[str, ...]
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class CommandCall:
    """Send one Redis command."""

    args: tuple[Arg, ...]
    node: str = ""
    """On Redis Cluster, the master (``host:port``) to send a keyless command to (``SCAN``),
    as :func:`~.topology.masters` names it; ignored where there is one server."""


@dataclass(frozen=True)
class PipelineCall:
    """Send several calls in one round trip (not a transaction); the reply is a list."""

    calls: tuple[ScriptCall | CommandCall, ...]


@dataclass(frozen=True)
class FieldChange:
    """One atomic change of a stored field, in both forms a store may need.

    ``kind`` with ``argument`` is what ``modify.lua`` does to a plain value in place (``incr``
    by an amount, ``append`` a JSON element); ``apply`` is the same change of a stored value,
    sealed or not (``None``: absent), done by the caller where the script cannot read it and
    by the memory store. ``limit`` is the longest result the script may write itself (0: any;
    -1: none, every value is sealed).
    """

    kind: str
    argument: str
    apply: Callable[[str | None], str]
    limit: int = 0


Call = ScriptCall | CommandCall | PipelineCall
Op = Generator[Call, Any, T]
"""An operation: yields calls, is sent their replies, returns a ``T``."""


class CallObserver(Protocol):
    """Told of each Redis round trip an operation makes, by the driver that runs it."""

    def redis_call(self, call: Call, started: float, ended: float, error: Exception | None) -> None:
        """``call`` went out at ``started`` and its reply (or ``error``) came back at ``ended``
        (both ``time.perf_counter``)."""


def call_name(call: Call) -> str:
    """A short, bounded name for a call (metrics, traces): its script or command, and a
    pipeline's distinct ones joined by ``+``. Never a key or an argument."""
    if isinstance(call, PipelineCall):
        return "+".join(dict.fromkeys(call_name(c) for c in call.calls))
    if isinstance(call, ScriptCall):
        return call.script.name
    return str(call.args[0]).lower()


def send(call: Call) -> Op[Any]:
    """An operation of one call, whose result is the call's reply."""
    return (yield call)


def done(value: T) -> Op[T]:
    """An operation that needs no Redis call at all."""
    return value
    yield  # pragma: no cover - makes this a generator
