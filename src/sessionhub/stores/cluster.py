"""Calls on Redis Cluster, through redis-py's cluster client.

Every key of one operation's script shares a hash tag (see ``docs/DESIGN.md``), so each call
goes whole to the master of its slot; a :class:`~.base.PipelineCall` whose calls live in
different slots is a redis-py cluster pipeline, which groups them per node (one round trip per
node, the nodes in turn) and follows ``MOVED`` and ``ASK`` while a slot moves. ``TRYAGAIN`` and
``CLUSTERDOWN`` are retried by the client; what is still failing after that reaches the
resilient core, which serves from memory (see :data:`~.redis.REDIS_DOWN`).

This path does not use the hand-written wire path of :mod:`.drivers` (hiredis packing on a held
connection): correctness first. Replies are already shaped by the cluster client's callbacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio.cluster as aiocluster
import redis.cluster
from redis.exceptions import NoScriptError

from .base import Call, PipelineCall, ScriptCall
from .wire import Single, call_args


def _missing_scripts(calls: Sequence[Single], replies: list[Any]) -> list[int]:
    return [
        i
        for i, (call, reply) in enumerate(zip(calls, replies, strict=True))
        if isinstance(call, ScriptCall) and isinstance(reply, NoScriptError)
    ]


def _result(call: Call, replies: list[Any]) -> Any:
    error = next((r for r in replies if isinstance(r, Exception)), None)
    if error is not None:
        raise error
    return replies if isinstance(call, PipelineCall) else replies[0]


class ClusterCalls:
    """Runs calls on a blocking :class:`redis.cluster.RedisCluster`."""

    def __init__(self, client: redis.cluster.RedisCluster) -> None:
        self.client = client

    def execute(self, call: Call) -> Any:
        calls = call.calls if isinstance(call, PipelineCall) else (call,)
        replies = self._send(calls)
        missing = _missing_scripts(calls, replies)
        if missing:  # a node restarted or failed over: its script cache is empty
            again = self._send([calls[i] for i in missing], eval_source=True)
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return _result(call, replies)

    def _send(self, calls: Sequence[Single], *, eval_source: bool = False) -> list[Any]:
        if len(calls) == 1:
            try:
                return [self.client.execute_command(*call_args(calls[0], eval_source=eval_source))]
            except redis.ResponseError as exc:
                return [exc]
        pipe = self.client.pipeline()
        for c in calls:
            pipe.execute_command(*call_args(c, eval_source=eval_source))
        replies: list[Any] = pipe.execute(raise_on_error=False)
        return replies


class AsyncClusterCalls:
    """Runs calls on an asyncio :class:`redis.asyncio.cluster.RedisCluster`."""

    def __init__(self, client: aiocluster.RedisCluster) -> None:
        self.client = client

    async def execute(self, call: Call) -> Any:
        calls = call.calls if isinstance(call, PipelineCall) else (call,)
        replies = await self._send(calls)
        missing = _missing_scripts(calls, replies)
        if missing:
            again = await self._send([calls[i] for i in missing], eval_source=True)
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return _result(call, replies)

    async def _send(self, calls: Sequence[Single], *, eval_source: bool = False) -> list[Any]:
        if len(calls) == 1:
            try:
                reply = await self.client.execute_command(
                    *call_args(calls[0], eval_source=eval_source)
                )
            except redis.ResponseError as exc:
                return [exc]
            return [reply]
        pipe = self.client.pipeline()
        for c in calls:
            pipe.execute_command(*call_args(c, eval_source=eval_source))
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies
