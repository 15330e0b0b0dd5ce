"""Calls on Redis Cluster: each to the master of its key's slot.

Every key of one operation's script shares a hash tag (see ``docs/DESIGN.md``), so each call
goes whole to the master of its slot. Both front ends route by the slot map redis-py's cluster
client keeps, and follow ``MOVED`` and ``ASK`` while a slot moves; ``TRYAGAIN`` and
``CLUSTERDOWN`` are sent again briefly; what is still failing after that reaches the resilient
core, which serves from memory (see :data:`~.redis.REDIS_DOWN`).

* Blocking (:class:`ClusterCalls`): through redis-py's cluster client; a
  :class:`~.base.PipelineCall` whose calls live in different slots is a redis-py cluster
  pipeline, which groups them per node (one round trip per node). Replies are shaped by the
  client's callbacks. At most ``REDIS.MAX_CONNECTIONS`` calls are in flight
  (:class:`~.busy.CallSlots`); more wait for a slot, so a burst never meets the client's
  ``MaxConnectionsError``, which would read as Redis being down.
* asyncio (:class:`AsyncClusterCalls`): one :class:`~.autopipeline.AutoPipeline` per master,
  so the concurrent calls of one loop turn to one node share one write, on one connection of
  that node, and a pipeline spanning nodes goes to all of them at once.

A keyless command that addresses one node's keyspace (``SCAN``, for ``sessionhub keys rotate``)
names its master (:attr:`~.base.CommandCall.node`) and goes to that node alone, so its reply
has the shape a single server gives (the cluster client would send it to every master and merge
the replies).

With ``REDIS.WAIT_REPLICAS``, a call ending in ``WAIT`` is sent to each node it writes on one
connection of that node, the node's calls then ``WAIT``: ``WAIT`` covers only what its own
connection wrote, so it cannot go through the cluster client, which would send it to any node.
A call of it refused with ``MOVED`` or ``ASK`` goes again, on both paths, to the node the slot
moved to, with a ``WAIT`` behind it there: the count returned is the fewest over every node
written, that one included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.cluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    MovedError,
    RedisClusterException,
    TryAgainError,
)

from .autopipeline import AutoPipeline
from .base import Call, CommandCall, PipelineCall, ScriptCall
from .busy import CallSlots
from .topology import LazyCluster
from .wire import Single, answer, call_args, is_wait, put_back, singles, to_send_again


def _key_of(call: Single) -> str:
    return call.keys[0] if isinstance(call, ScriptCall) else str(call.args[1])


def _written(calls: Sequence[Single]) -> list[int]:
    """The positions of the calls other than WAIT."""
    return [i for i, call in enumerate(calls) if not is_wait(call)]


def _by_node(
    positions: Iterable[int], node_of: Callable[[int], Any]
) -> dict[str, tuple[Any, list[int]]]:
    """``positions`` grouped by the node ``node_of`` names for each (its key's slot's master)."""
    groups: dict[str, tuple[Any, list[int]]] = {}
    for i in positions:
        node = node_of(i)
        groups.setdefault(node.name, (node, []))[1].append(i)
    return groups


Acks = dict[str, Any]
"""Each node's ``WAIT`` reply (or its error), by node name. A node sent again after a
``NOSCRIPT`` has its new one in place of its first: that ``WAIT`` ran after everything written
on the node for the call, the first one before the scripts sent again wrote anything."""


def _fewest(acks: Iterable[Any]) -> Any:
    """The fewest replicas any of ``acks`` reports, or the first error among them."""
    acks = list(acks)
    error = next((a for a in acks if isinstance(a, Exception)), None)
    return error if error is not None else min((int(a) for a in acks), default=0)


def _fill_waits(calls: Sequence[Single], replies: list[Any], acks: Acks) -> None:
    """WAIT's reply: the fewest replicas any node written reports (or its error)."""
    fewest = _fewest(acks.values())
    for i, call in enumerate(calls):
        if is_wait(call):
            replies[i] = fewest


def _take(
    replies: list[Any], acks: Acks, name: str, where: list[int], got: list[Any], waited: bool
) -> None:
    """Put one node's replies (``got``, sent as :func:`_batch` laid out) in their places, and
    its WAIT reply (the last) into ``acks``: a node sent to again in the same send keeps the
    fewer, since each WAIT counts only what its own connection wrote."""
    for i, reply in zip(where, got, strict=True):
        if i >= 0:
            replies[i] = reply
    if waited:
        acked = got[-1]
        acks[name] = _fewest((acks[name], acked)) if name in acks else acked


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
    at once (the client's pools must allow that many per node, see :mod:`.topology`); the
    client is built by the first call that finds the cluster up (:class:`.LazyCluster`)."""

    def __init__(self, cluster: LazyCluster, slots: CallSlots) -> None:
        self.cluster = cluster
        self.slots = slots

    @property
    def client(self) -> redis.cluster.RedisCluster:
        return self.cluster.get()

    def execute(self, call: Call) -> Any:
        with self.slots.held():
            return self._execute(call)

    def _execute(self, call: Call) -> Any:
        if node := _one_node(call):
            assert isinstance(call, CommandCall)
            return _node(self.client, node).redis_connection.execute_command(*call.args)
        calls = singles(call)
        acks: Acks = {}
        replies = self._send(calls, acks)
        # A node restarted or failed over: its script cache is empty.
        again = to_send_again(calls, replies)
        if again:
            # The WAIT sent again counts the nodes sent again; ``acks`` still has the others'.
            resent = self._send([calls[i] for i in again], acks, eval_source=True)
            put_back(replies, again, resent)
        return answer(call, replies)

    def _send(self, calls: Sequence[Single], acks: Acks, *, eval_source: bool = False) -> list[Any]:
        """Each call's reply, or its error; a WAIT's per node into ``acks``."""
        if any(is_wait(c) for c in calls):
            return self._send_waiting(calls, acks, eval_source)
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

    def _send_waiting(self, calls: Sequence[Single], acks: Acks, eval_source: bool) -> list[Any]:
        """Each node's calls and a WAIT on one of its connections: WAIT counts the replicas that
        have what was written on its own connection. A call whose slot moved (``MOVED``, ``ASK``:
        nothing was written) goes again where the slot is now, with a WAIT behind it there too,
        so a write during a reshard is counted on the node it landed on. ``acks``: the nodes
        sent to here replace their reply in it."""
        replies: list[Any] = [None] * len(calls)
        wait = next(c for c in calls if is_wait(c))
        mine: Acks = {}
        todo = _written(calls)
        asked: dict[int, Any] = {}
        timeout = self.client.nodes_manager.connection_kwargs.get("socket_timeout")
        deadline = time.monotonic() + (timeout or 0.0)
        for _ in range(_SENDS):
            self._send_once(calls, todo, asked, wait, replies, mine, eval_source)
            todo, asked = self._redirected(replies, todo, deadline)
            if not todo:
                break
        if (unfinished := _unfinished(replies)) is not None:
            raise unfinished
        acks.update(mine)
        _fill_waits(calls, replies, acks)
        return replies

    def _send_once(
        self,
        calls: Sequence[Single],
        todo: list[int],
        asked: dict[int, Any],
        wait: Single,
        replies: list[Any],
        acks: Acks,
        eval_source: bool,
    ) -> None:
        """Send the calls at ``todo``, one pipeline per node, into ``replies`` and ``acks``."""

        def node_of(i: int) -> Any:
            return asked.get(i) or self.client.get_node_from_key(_key_of(calls[i]))

        for name, (node, positions) in _by_node(todo, node_of).items():
            batch, where = _batch(calls, positions, asked, wait, eval_source)
            # A node the slot map learnt of from a MOVED has no client of its own yet.
            pipe = self.client.get_redis_connection(node).pipeline(transaction=False)
            for c, as_eval in batch:
                pipe.execute_command(*call_args(c, eval_source=as_eval))
            _take(replies, acks, name, where, pipe.execute(raise_on_error=False), waited=True)

    def _redirected(
        self, replies: list[Any], todo: list[int], deadline: float
    ) -> tuple[list[int], dict[int, Any]]:
        """The calls to send again, in order, and those of them to send to the node an ASK
        named; the slot map patched as each MOVED says, and paused if one asks (as the asyncio
        path does, :meth:`AsyncClusterCalls._redirected`). An ASK to a node the map does not
        know refreshes the map and stands (:func:`_unfinished`)."""
        manager = self.client.nodes_manager
        again: list[int] = []
        asked: dict[int, Any] = {}
        paused: list[int] = []
        for i in todo:
            reply = replies[i]
            if isinstance(reply, MovedError):
                manager.move_slot(reply)
                again.append(i)
            elif isinstance(reply, AskError):
                node = manager.get_node(host=reply.host, port=reply.port)
                if node is None:
                    manager.initialize()
                else:
                    asked[i] = node
                    again.append(i)
            elif isinstance(reply, TryAgainError | ClusterDownError):
                paused.append(i)
        if (wait := _pause(replies, paused, deadline - time.monotonic())) is not None:
            pause, down = wait
            if down:
                manager.initialize()
            time.sleep(pause)
            again = sorted([*again, *paused])
        return again, asked


_ASKING = CommandCall(("ASKING",))
_KEYLESS = frozenset({"PING", "INFO", "CONFIG", "DBSIZE"})
"""The commands SessionHub sends without a key (and without a node): health, stats, setup.
``PUBLISH`` is routed by its channel: any master spreads a message to the whole cluster."""
_SENDS = aiocluster.RedisCluster.RedisClusterRequestTTL
"""How many times one call is sent at most: redis-py's own bound on following redirects."""
TRYAGAIN_PAUSE = 0.05
CLUSTERDOWN_PAUSE = 0.25
"""How long to wait before sending again a call answered ``TRYAGAIN`` (a multi-key call while
its slot moves) or ``CLUSTERDOWN`` (a failover under way): redis-py's own pauses."""


def _pause(replies: list[Any], paused: list[int], left: float) -> tuple[float, bool] | None:
    """How long to wait before sending the ``paused`` calls again (answered ``TRYAGAIN`` or
    ``CLUSTERDOWN``), and whether the cluster said it is down (the slot map is then read
    again); ``None`` when that would pass the ``left`` seconds of the call's time: their errors
    then stand, and the resilient core takes it from there."""
    if not paused:
        return None
    down = any(isinstance(replies[i], ClusterDownError) for i in paused)
    pause = CLUSTERDOWN_PAUSE if down else TRYAGAIN_PAUSE
    return None if pause > left else (pause, down)


def _client_of(connection_class: Any, kwargs: dict[str, Any]) -> aioredis.Redis:
    """A client with these connection settings, for an :class:`AutoPipeline` to dial like it;
    it never opens a connection of its own."""
    pool = aioredis.ConnectionPool(**{**kwargs, "connection_class": connection_class})
    return aioredis.Redis(connection_pool=pool)


def _batch(
    calls: Sequence[Single],
    positions: list[int],
    asked: dict[int, Any],
    wait: Single | None,
    eval_source: bool,
) -> tuple[list[tuple[Single, bool]], list[int]]:
    """What one node is sent, as (call, sent as EVAL), and the position of each call's reply
    (-1: none): its calls in order, then WAIT. A call an ASK sent here follows an ASKING, which
    admits the next command of its connection only; so a script goes as EVAL, since a NOSCRIPT
    retry would come later, without ASKING."""
    sent: list[tuple[Single, bool]] = []
    where: list[int] = []
    for i in positions:
        if i in asked:
            sent.append((_ASKING, False))
            where.append(-1)
        sent.append((calls[i], eval_source or i in asked))
        where.append(i)
    if wait is not None:
        sent.append((wait, False))
        where.append(-1)
    return sent, where


def _unfinished(replies: list[Any]) -> Exception | None:
    """The error for a call still redirected after every send (redis-py's "TTL exhausted")."""
    redirect = next((r for r in replies if isinstance(r, AskError)), None)
    if redirect is None:
        return None
    return ClusterError(
        f"Redis Cluster still redirected a call after up to {_SENDS} sends ({redirect}): its "
        "slots kept moving; the next call is routed by the slot map as it is then"
    )


_Sent = tuple[str, AutoPipeline, list[Single], list[int], list[asyncio.Future[Any]]]
"""One node's part of a send: its name, its pipeline, the calls queued, where each reply goes
(:func:`_batch`) and their futures."""


class AsyncClusterCalls:
    """Runs calls on an asyncio :class:`redis.asyncio.cluster.RedisCluster` with one
    :class:`AutoPipeline` per master: each call goes to the master of its key's slot, so the
    calls of one loop turn to one node share one write and one read, and a pipeline of several
    nodes goes to all of them at once.

    The slot map is the cluster client's own (``get_node_from_key``), kept as redis-py keeps it:
    a ``MOVED`` patches it (``move_slot``) and the call goes where it now points; an ``ASK``
    sends the call once to the node named, after ``ASKING``; ``TRYAGAIN`` and ``CLUSTERDOWN``
    (the latter after refreshing the map) are sent again after redis-py's pauses, as long as the
    call has not been going for longer than the socket timeout. A node that does not answer
    fails its calls (the resilient core serves them from memory) and the next call refreshes
    the slot map first, so it finds the replica promoted in its place. This is by hand because
    redis-py's cluster client sends each command or pipeline on a connection of its own.
    """

    @staticmethod
    def supports(client: aiocluster.RedisCluster) -> bool:
        """Whether the nodes' connection settings are ones :class:`AutoPipeline` can dial."""
        kwargs = dict(client.connection_kwargs)
        return AutoPipeline.supports(_client_of(kwargs.pop("connection_class"), kwargs))

    def __init__(self, client: aiocluster.RedisCluster) -> None:
        self.client = client
        self._pipelines: dict[str, AutoPipeline] = {}
        self._stale = False
        """A node did not answer: refresh the slot map before the next call."""
        self._timeout: float | None = client.connection_kwargs.get("socket_timeout")

    def pipeline(self, node: aiocluster.ClusterNode) -> AutoPipeline:
        """The auto-pipeline of ``node``, made on first use."""
        pipeline = self._pipelines.get(node.name)
        if pipeline is None:
            client = _client_of(node.connection_class, node.connection_kwargs)
            pipeline = self._pipelines[node.name] = AutoPipeline(client)
        return pipeline

    async def execute(self, call: Call) -> Any:
        await self.client.initialize()  # the slot map, once; then no I/O
        if self._stale:
            self._stale = False  # one refresh for the calls of this turn, not one each
            try:
                await self.client.nodes_manager.initialize()
            except BaseException:
                self._stale = True
                raise
        if node := _one_node(call):
            assert isinstance(call, CommandCall)
            return await self.pipeline(_node(self.client, node)).submit(call)
        if isinstance(call, CommandCall) and call.args[0] in _KEYLESS:
            # Nothing to route by: redis-py picks the node(s), as for the blocking hub.
            return await self.client.execute_command(*call.args)
        if isinstance(call, PipelineCall):
            replies = await self._send(call.calls)
        else:
            replies = await self._send_one(call)
        if (unfinished := _unfinished(replies)) is not None:
            raise unfinished
        return answer(call, replies)

    async def _send_one(self, call: Single) -> list[Any]:
        """The usual request, one call: straight to the pipeline of its node; only a redirect
        takes the way of :meth:`_send`."""
        node = self.client.get_node_from_key(_key_of(call))
        assert node is not None  # None is for replicas only
        try:
            return [await self.pipeline(node).submit(call)]
        except (AskError, TryAgainError, ClusterDownError) as exc:  # AskError: MOVED too
            return await self._send((call,), [exc])
        except (redis.ConnectionError, redis.TimeoutError):
            self._stale = True
            raise

    async def _send(
        self,
        calls: Sequence[Single],
        first: list[Any] | None = None,
        *,
        eval_source: bool = False,
        acks: Acks | None = None,
    ) -> list[Any]:
        """Each call's reply, or its error: sent to the node of its slot (each node's calls
        followed by the WAIT, if there is one), then again wherever a redirect points, and
        after a NOSCRIPT as EVAL (:func:`~.wire.to_send_again`). ``first``: the replies of a
        first send already made; ``acks``: the WAIT replies of the send this one sends again,
        which this one's replace node by node."""
        deadline = asyncio.get_running_loop().time() + (self._timeout or 0.0)
        replies: list[Any] = first or [None] * len(calls)
        mine: Acks = {}
        wait = next((c for c in calls if is_wait(c)), None)
        todo: list[int] = _written(calls)
        asked: dict[int, Any] = {}
        sends = 0
        if first is not None:
            todo, asked = await self._redirected(replies, todo, deadline)
            sends = 1
        while todo and sends < _SENDS:
            await self._send_once(calls, todo, asked, wait, replies, mine, eval_source)
            todo, asked = await self._redirected(replies, todo, deadline)
            sends += 1
        acks = mine if acks is None else {**acks, **mine}
        if wait is not None:
            _fill_waits(calls, replies, acks)
        if not eval_source and (again := to_send_again(calls, replies)):
            resent = await self._send([calls[i] for i in again], eval_source=True, acks=acks)
            put_back(replies, again, resent)
        return replies

    async def _send_once(
        self,
        calls: Sequence[Single],
        todo: list[int],
        asked: dict[int, Any],
        wait: Single | None,
        replies: list[Any],
        acks: Acks,
        eval_source: bool,
    ) -> None:
        """Send the calls at ``todo``, every node's in this loop turn, into ``replies``, and
        the WAIT replies into ``acks`` (a node sent to again in this send keeps the fewer)."""

        def node_of(i: int) -> Any:
            return asked.get(i) or self.client.get_node_from_key(_key_of(calls[i]))

        sent: list[_Sent] = []
        for name, (node, positions) in _by_node(todo, node_of).items():
            pipeline = self.pipeline(node)
            batch, where = _batch(calls, positions, asked, wait, eval_source)
            futures = [f for c, as_eval in batch for f in pipeline.queue([c], eval_source=as_eval)]
            sent.append((name, pipeline, [c for c, _ in batch], where, futures))
        for name, pipeline, node_calls, where, futures in sent:
            got = await pipeline.replies(node_calls, futures)
            _take(replies, acks, name, where, got, waited=wait is not None)

    async def _redirected(
        self, replies: list[Any], todo: list[int], deadline: float
    ) -> tuple[list[int], dict[int, Any]]:
        """The calls to send again, in order, and those of them to send to the node an ASK
        named; the slot map patched or refreshed as the replies say, and paused if one asks."""
        manager = self.client.nodes_manager
        moved: list[int] = []
        asked: dict[int, Any] = {}
        paused: list[int] = []
        for i in todo:
            reply = replies[i]
            if isinstance(reply, MovedError):
                await manager.move_slot(reply)
                moved.append(i)
            elif isinstance(reply, AskError):
                node = manager.get_node(host=reply.host, port=reply.port)
                if node is None:  # a node the map does not know yet: the next call's refresh
                    self._stale = True
                else:
                    asked[i] = node
            elif isinstance(reply, TryAgainError | ClusterDownError):
                paused.append(i)
            elif isinstance(reply, redis.ConnectionError | redis.TimeoutError):
                self._stale = True
        left = deadline - asyncio.get_running_loop().time()
        if (wait := _pause(replies, paused, left)) is None:
            paused = []
        else:
            pause, down = wait
            if down:
                await manager.initialize()
            await asyncio.sleep(pause)
        return sorted([*moved, *asked, *paused]), asked

    async def disconnect(self) -> None:
        """Close every node's connection (the next call reconnects, to the slot map as
        refreshed first); calls in flight fail."""
        self._stale = True
        for pipeline in list(self._pipelines.values()):
            await pipeline.disconnect()
