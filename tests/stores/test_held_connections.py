"""The blocking driver's connection reuse, against a real redis-server."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
import redis

from helpers import build_settings
from redis_server import RedisServer
from sessionhub.hub import redis_client_kwargs
from sessionhub.stores.base import CommandCall, Op
from sessionhub.stores.drivers import HeldConnections, run_sync


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, **redis_client_kwargs(build_settings(url).redis))


def _call(*args: str | int) -> Op[object]:
    reply = yield CommandCall(args)
    return reply


def _next_connection(held: HeldConnections) -> object:
    """The connection the next call will use, left in place."""
    conn = held.take()
    held.give(conn)
    return conn


def _client_ids(client: redis.Redis) -> set[str]:
    return {str(c["id"]) for c in client.client_list() if c.get("name") != "observer"}


def test_sequential_calls_reuse_one_connection(redis_url: str) -> None:
    """A hundred calls in a row open one connection and never check one out of the pool again."""
    client = _client(redis_url)
    held = HeldConnections(client)
    observer = redis.Redis.from_url(redis_url)
    observer.client_setname("observer")
    try:
        before = _client_ids(observer)
        for i in range(100):
            assert run_sync(_call("SET", "k", i), held) is True
        assert run_sync(_call("GET", "k"), held) == "99"
        assert len(_client_ids(observer) - before) == 1
        assert len(client.connection_pool._in_use_connections) == 1  # type: ignore[attr-defined]
    finally:
        observer.close()
        client.close()


def test_threads_get_their_own_connections(redis_url: str) -> None:
    """Concurrent threads never share a connection: every reply reaches the thread that asked."""
    client = _client(redis_url)
    held = HeldConnections(client)
    errors: list[str] = []

    def worker(n: int) -> None:
        for i in range(200):
            value = f"{n}:{i}"
            if run_sync(_call("ECHO", value), held) != value:
                errors.append(value)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    assert errors == []


def test_pool_disconnect_closes_held_connections_and_they_reconnect(redis_url: str) -> None:
    """``pool.disconnect()`` (what the probe does) closes a held connection; the next call
    reconnects on its own."""
    client = _client(redis_url)
    held = HeldConnections(client)
    try:
        run_sync(_call("PING"), held)
        conn: Any = _next_connection(held)
        assert conn._sock is not None
        client.connection_pool.disconnect()
        assert conn._sock is None
        assert run_sync(_call("PING"), held) is True
        assert conn._sock is not None
    finally:
        client.close()


def test_a_connection_that_failed_mid_call_is_not_reused_as_it_is(
    fresh_redis_server: RedisServer,
) -> None:
    """A call that dies with the server leaves its connection closed, not half-read; once the
    server is back the same hub answers again."""
    client = _client(fresh_redis_server.url)
    held = HeldConnections(client)
    try:
        run_sync(_call("PING"), held)
        fresh_redis_server.kill()
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            run_sync(_call("PING"), held)
        conn: Any = _next_connection(held)
        assert conn._sock is None
        fresh_redis_server.start()
        assert run_sync(_call("PING"), held) is True
    finally:
        client.close()


def test_a_forked_child_does_not_use_the_parents_connections(redis_url: str) -> None:
    """After a fork the child opens its own connection; the parent's stays the parent's."""
    client = _client(redis_url)
    held = HeldConnections(client)
    try:
        run_sync(_call("PING"), held)
        parent_conn = _next_connection(held)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            try:
                ok = run_sync(_call("ECHO", "child"), held) == "child"
                os.write(write, b"1" if ok and held.take() is not parent_conn else b"0")
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert os.read(read, 1) == b"1"
        assert run_sync(_call("ECHO", "parent"), held) == "parent"
        assert held.take() is parent_conn
    finally:
        client.close()
