"""Self-tests for the redis-server test helper."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from redis_server import FORBIDDEN_PORT, RedisServer, find_redis_server


def test_starts_on_private_port(redis_server: RedisServer, redis_url: str) -> None:
    """The session server runs on a loopback port other than 6379 and answers PING."""
    assert redis_server.is_running
    assert redis_server.port != FORBIDDEN_PORT
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/0"
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping() is True
        assert client.dbsize() == 0
    finally:
        client.close()


def test_kill_then_restart_same_port(fresh_redis_server: RedisServer) -> None:
    """After kill() PING raises ConnectionError, and restart() answers again on the same port."""
    server = fresh_redis_server
    port = server.port
    client = server.client(retry=None)
    try:
        assert client.ping() is True
        server.kill()
        assert not server.is_running
        with pytest.raises(redis.ConnectionError):
            client.ping()

        server.restart()
        assert server.is_running
        assert server.port == port
        assert client.ping() is True
    finally:
        client.close()


def test_restart_loses_data(fresh_redis_server: RedisServer) -> None:
    """Data written before a restart is gone afterwards because nothing is persisted."""
    server = fresh_redis_server
    before = server.client()
    try:
        before.set(b"sessionhub:test", b"value")
        assert before.get(b"sessionhub:test") == b"value"
    finally:
        before.close()

    server.restart()

    after = server.client()
    try:
        assert after.get(b"sessionhub:test") is None
        assert after.dbsize() == 0
    finally:
        after.close()
    assert not list(server.dir.glob("*.rdb"))
    assert not list(server.dir.glob("appendonly*"))


def test_an_older_redis_server_is_refused_with_how_to_get_one(tmp_path: Path) -> None:
    """A redis-server older than 7.0 is refused by name and version, with how to get a newer."""
    old = tmp_path / "redis-server"
    old.write_text("#!/bin/sh\necho 'Redis server v=6.2.14 sha=00000000:0 malloc=libc'\n")
    old.chmod(0o755)
    with pytest.raises(RuntimeError, match=r"v=6\.2.*needs Redis 7\.0 or newer.*apt-get"):
        find_redis_server(old)
