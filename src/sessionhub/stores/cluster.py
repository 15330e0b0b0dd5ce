"""Calls on Redis Cluster, through redis-py's cluster client.

Every key of one operation's script shares a hash tag (see ``docs/DESIGN.md``), so each call
goes whole to the master of its slot; a :class:`~.base.PipelineCall` whose calls live in
different slots is a redis-py cluster pipeline, which groups them per node (one round trip per
node, the nodes in turn) and follows ``MOVED`` and ``ASK`` while a slot moves. ``TRYAGAIN`` and
``CLUSTERDOWN`` are retried by the client; what is still failing after that reaches the
resilient core, which serves from memory (see :data:`~.redis.REDIS_DOWN`).

A keyless command that addresses one node's keyspace (``SCAN``, for ``sessionhub keys rotate``)
names its master (:attr:`~.base.CommandCall.node`) and goes to that node's own client, so its
reply has the shape a single server gives (the cluster client would send it to every master
and merge the replies).

With ``REDIS.WAIT_REPLICAS``, a call ending in ``WAIT`` is sent to each node it writes on one
connection of that node, the node's calls then ``WAIT``: ``WAIT`` covers only what its own
connection wrote, so it cannot go through the cluster client, which would send it to any node.

A call holds at most one connection of each node at a time, and at most ``REDIS.MAX_CONNECTIONS``
calls are in flight (:class:`~.busy.CallSlots`); more wait for a slot, so a burst never meets the
client's ``MaxConnectionsError``, which would read as Redis being down.

This path does not use the hand-written wire path of :mod:`.drivers` (hiredis packing on a held
connection): correctness first. Replies are already shaped by the cluster client's callbacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio.cluster as aiocluster
import redis.cluster
from redis.exceptions import AskError, RedisClusterException

from .base import Call, CommandCall, ScriptCall
from .busy import CallSlots
from .wire import Single, answer, call_args, missing_scripts, put_back, singles


def _is_wait(call: Single) -> bool:
    return isinstance(call, CommandCall) and call.args[0] == "WAIT"


def _key_of(call: Single) -> str:
    return call.keys[0] if isinstance(call, ScriptCall) else str(call.args[1])


def _retried(calls: Sequence[Single], missing: list[int]) -> list[int]:
    """The calls to send again after NOSCRIPT: the missing scripts and any WAIT, which must
    follow them on the same connection to cover them."""
    return missing + [i for i, c in enumerate(calls) if _is_wait(c)] if missing else []


def _by_node(calls: Sequence[Single], node_of: Any) -> dict[str, tuple[Any, list[int]]]:
    """The positions of the calls other than WAIT, grouped by the node of their key's slot."""
    groups: dict[str, tuple[Any, list[int]]] = {}
    for i, call in enumerate(calls):
        if not _is_wait(call):
            node = node_of(_key_of(call))
            groups.setdefault(node.name, (node, []))[1].append(i)
    return groups


def _fill_waits(calls: Sequence[Single], replies: list[Any], acks: list[Any]) -> None:
    """WAIT's reply: the fewest replicas any node written reports (or its error)."""
    error = next((a for a in acks if isinstance(a, Exception)), None)
    fewest = error if error is not None else min((int(a) for a in acks), default=0)
    for i, call in enumerate(calls):
        if _is_wait(call):
            replies[i] = fewest


def _moved(replies: list[Any]) -> list[int]:
    """Calls a node refused because their slot moved (MOVED, ASK): nothing was written, and the
    cluster client sends them again where the slot is now (without WAIT)."""
    return [i for i, reply in enumerate(replies) if isinstance(reply, AskError)]


def _one_node(call: Call) -> str:
    """The master a call must go to whole, or ``""`` when its keys decide."""
    return call.node if isinstance(call, CommandCall) else ""


def _node(client: Any, name: str) -> Any:
    node = client.get_node(node_name=name)
    if node is None:  # failed over or removed since the caller listed the masters
        raise RedisClusterException(
            f"cluster node {name} is no longer known; list the masters again"
        )
    return node


class ClusterCalls:
    """Runs calls on a blocking :class:`redis.cluster.RedisCluster`, at most ``slots.limit``
    at once (the client's pools must allow that many per node, see :mod:`.topology`)."""

    def __init__(self, client: redis.cluster.RedisCluster, slots: CallSlots) -> None:
        self.client = client
        self.slots = slots

    def execute(self, call: Call) -> Any:
        with self.slots.held():
            return self._execute(call)

    def _execute(self, call: Call) -> Any:
        if node := _one_node(call):
            assert isinstance(call, CommandCall)
            return _node(self.client, node).redis_connection.execute_command(*call.args)
        calls = singles(call)
        replies = self._send(calls)
        # A node restarted or failed over: its script cache is empty.
        again = _retried(calls, missing_scripts(calls, replies))
        if again:
            resent = self._send([calls[i] for i in again], eval_source=True)
            put_back(replies, again, resent)
        return answer(call, replies)

    def _send(self, calls: Sequence[Single], *, eval_source: bool = False) -> list[Any]:
        if any(_is_wait(c) for c in calls):
            return self._send_waiting(calls, eval_source)
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

    def _send_waiting(self, calls: Sequence[Single], eval_source: bool) -> list[Any]:
        """Each node's calls and a WAIT on one of its connections: WAIT counts the replicas that
        have what was written on its own connection."""
        replies: list[Any] = [None] * len(calls)
        acks: list[Any] = []
        wait = next(c for c in calls if _is_wait(c))
        for node, positions in _by_node(calls, self.client.get_node_from_key).values():
            pipe = node.redis_connection.pipeline(transaction=False)
            for i in positions:
                pipe.execute_command(*call_args(calls[i], eval_source=eval_source))
            pipe.execute_command(*call_args(wait))
            *written, acked = pipe.execute(raise_on_error=False)
            put_back(replies, positions, written)
            acks.append(acked)
        _fill_waits(calls, replies, acks)
        moved = _moved(replies)
        if moved:
            resent = self._send([calls[i] for i in moved], eval_source=eval_source)
            put_back(replies, moved, resent)
        return replies


class AsyncClusterCalls:
    """Runs calls on an asyncio :class:`redis.asyncio.cluster.RedisCluster` (as
    :class:`ClusterCalls`)."""

    def __init__(self, client: aiocluster.RedisCluster, slots: CallSlots) -> None:
        self.client = client
        self.slots = slots

    async def execute(self, call: Call) -> Any:
        async with self.slots.held_async():
            return await self._execute(call)

    async def _execute(self, call: Call) -> Any:
        if node := _one_node(call):
            assert isinstance(call, CommandCall)
            return await _node(self.client, node).execute_command(*call.args)
        calls = singles(call)
        replies = await self._send(calls)
        again = _retried(calls, missing_scripts(calls, replies))
        if again:
            resent = await self._send([calls[i] for i in again], eval_source=True)
            put_back(replies, again, resent)
        return answer(call, replies)

    async def _send(self, calls: Sequence[Single], *, eval_source: bool = False) -> list[Any]:
        if any(_is_wait(c) for c in calls):
            return await self._send_waiting(calls, eval_source)
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

    async def _send_waiting(self, calls: Sequence[Single], eval_source: bool) -> list[Any]:
        """The mirror image of :meth:`ClusterCalls._send_waiting`."""
        replies: list[Any] = [None] * len(calls)
        acks: list[Any] = []
        wait = next(c for c in calls if _is_wait(c))
        for node, positions in _by_node(calls, self.client.get_node_from_key).values():
            sent = [calls[i] for i in positions]
            commands = [
                aiocluster.PipelineCommand(n, *call_args(c, eval_source=eval_source))
                for n, c in enumerate([*sent, wait])
            ]
            await node.execute_pipeline(commands)
            *written, acked = [command.result for command in commands]
            put_back(replies, positions, written)
            acks.append(acked)
        _fill_waits(calls, replies, acks)
        moved = _moved(replies)
        if moved:
            resent = await self._send([calls[i] for i in moved], eval_source=eval_source)
            put_back(replies, moved, resent)
        return replies
