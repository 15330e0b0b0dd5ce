"""What every way of sending calls shares: the wire format, and what an operation gets back.

Calls are packed with hiredis and their replies shaped as redis-py's ``execute_command`` would
return them, so every path (both drivers, the auto-pipeline, Cluster) sends exactly the same
bytes and hands operations the same values; :func:`answer` turns a step's replies into what the
operation is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from hiredis import pack_command
from redis.exceptions import NoScriptError

from .base import Call, CommandCall, PipelineCall, ScriptCall

Single = ScriptCall | CommandCall


def call_args(call: Single, *, eval_source: bool = False) -> tuple[Any, ...]:
    """``call``'s command: ``EVALSHA`` for a script (``EVAL`` with the source if asked)."""
    if isinstance(call, ScriptCall):
        head = ("EVAL", call.script.source) if eval_source else ("EVALSHA", call.script.sha)
        return (*head, len(call.keys), *call.keys, *call.args)
    return call.args


def packed(call: Single, *, eval_source: bool = False) -> bytes:
    """``call`` as RESP (see :func:`call_args`)."""
    out: bytes = pack_command(call_args(call, eval_source=eval_source))
    return out


def packed_all(calls: Sequence[Single], *, eval_source: bool = False) -> bytes:
    return b"".join(packed(c, eval_source=eval_source) for c in calls)


def needs_eval(call: Single, reply: Any) -> bool:
    """Whether Redis did not have the script cached (after a restart or SCRIPT FLUSH)."""
    return isinstance(reply, NoScriptError) and isinstance(call, ScriptCall)


def is_wait(call: Single) -> bool:
    """Whether ``call`` is the ``WAIT`` of ``REDIS.WAIT_REPLICAS``."""
    return isinstance(call, CommandCall) and call.args[0] == "WAIT"


def to_send_again(calls: Sequence[Single], replies: Sequence[Any]) -> list[int]:
    """The positions of the calls to send again, scripts as ``EVAL``, after a ``NOSCRIPT``
    (:func:`needs_eval`): the missing scripts, then any ``WAIT``. The first ``WAIT`` ran
    before the scripts wrote anything, and one counts only what its own connection wrote
    before it, so the resent writes need a ``WAIT`` of their own, behind them on the same
    connection; its reply is the one that stands (on Cluster, for the nodes sent again)."""
    for reply in replies:  # on every step: a bare loop is the cheapest look
        if isinstance(reply, NoScriptError):
            missing = [i for i, reply in enumerate(replies) if needs_eval(calls[i], reply)]
            return missing + [i for i, call in enumerate(calls) if is_wait(call)] if missing else []
    return []


def put_back(replies: list[Any], positions: Sequence[int], resent: Sequence[Any]) -> None:
    """Put the replies of the calls sent again in their places."""
    for i, reply in zip(positions, resent, strict=True):
        replies[i] = reply


def singles(call: Call) -> tuple[Single, ...]:
    """The calls one step of an operation sends: a pipeline's, or the call itself."""
    return call.calls if isinstance(call, PipelineCall) else (call,)


def answer(call: Call, replies: list[Any]) -> Any:
    """What the operation is sent for ``call``: its reply, or a pipeline's replies; the first
    error Redis answered with is raised into it instead."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies if isinstance(call, PipelineCall) else replies[0]


def shaped(client: redis.Redis | aioredis.Redis, call: Single, reply: Any) -> Any:
    """A reply as redis-py's ``execute_command`` would return it (its response callback)."""
    if isinstance(call, ScriptCall) or isinstance(reply, Exception):
        return reply
    callback = client.response_callbacks.get(str(call.args[0]).upper())
    return reply if callback is None else callback(reply)
