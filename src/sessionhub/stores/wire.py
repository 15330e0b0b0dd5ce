"""The Redis wire format of a call, shared by both drivers and the auto-pipeline.

Calls are packed with hiredis and their replies shaped as redis-py's ``execute_command`` would
return them, so every path sends exactly the same bytes and hands operations the same values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from hiredis import pack_command
from redis.exceptions import NoScriptError

from .base import CommandCall, ScriptCall

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


def packed_all(calls: Sequence[Single]) -> bytes:
    return b"".join(packed(c) for c in calls)


def needs_eval(call: Single, reply: Any) -> bool:
    """Whether Redis did not have the script cached (after a restart or SCRIPT FLUSH)."""
    return isinstance(reply, NoScriptError) and isinstance(call, ScriptCall)


def shaped(client: redis.Redis | aioredis.Redis, call: Single, reply: Any) -> Any:
    """A reply as redis-py's ``execute_command`` would return it (its response callback)."""
    if isinstance(call, ScriptCall) or isinstance(reply, Exception):
        return reply
    callback = client.response_callbacks.get(str(call.args[0]).upper())
    return reply if callback is None else callback(reply)
