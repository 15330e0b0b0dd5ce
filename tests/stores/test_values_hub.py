"""Session data through the value codec: encrypted fields, compression sizes, MAX_BYTES."""

from __future__ import annotations

import base64
import os

import pytest
import redis

from helpers import build_settings
from sessionhub.exceptions import DataError
from sessionhub.hub import SessionHub

KEY = {"ID": "k1", "KEY": base64.b64encode(os.urandom(32)).decode()}


def _stored(redis_url: str, storage_id: str) -> dict[bytes, bytes]:
    client = redis.Redis.from_url(redis_url)
    try:
        (name,) = client.scan_iter(match=f"session:*:s:{storage_id}")
        return client.hgetall(name)
    finally:
        client.close()


def test_session_data_agent_and_ip_are_encrypted_and_read_back(redis_url: str) -> None:
    """Data keys, the user agent and the IP are stored encrypted; the memory mirror holds the
    same sealed fields; everything reads back."""
    hub = SessionHub(build_settings(redis_url, encryption={"KEYS": [KEY]}))
    try:
        session, cookie = hub.create("alice", user_agent="AgentMarker/1.0", ip="10.1.2.3")
        session["cart"] = ["marker-item"]
        assert hub.save(session)
        stored = _stored(redis_url, session.storage_id)
        dump = b"".join(stored.values())
        for needle in (b"AgentMarker", b"10.1.2.3", b"marker-item"):
            assert needle not in dump
        mirrored = hub.manager.core.memory.peek(session.storage_id, hub.manager.core.clock())
        assert mirrored is not None
        assert "marker-item" not in "".join(mirrored.values())
        opened = hub.open(cookie)
        assert opened is not None
        assert opened["cart"] == ["marker-item"]
        assert (opened.record.user_agent, opened.record.ip) == ("AgentMarker/1.0", "10.1.2.3")
    finally:
        hub.close()


@pytest.mark.parametrize("threshold", [0, 1024])
def test_large_session_is_compressed_above_the_threshold(redis_url: str, threshold: int) -> None:
    """A large session value takes far fewer bytes in Redis with compression on, and reads back
    the same either way."""
    hub = SessionHub(build_settings(redis_url, session={"COMPRESS_THRESHOLD": threshold}))
    try:
        value = [{"sku": f"item-{i}", "qty": i % 5, "note": "standard"} for i in range(800)]
        session, cookie = hub.create("alice", data={"cart": value})
        stored = _stored(redis_url, session.storage_id)[b"d:cart"]
        plain = len(str(value))
        assert (len(stored) < plain / 4) == bool(threshold)
        opened = hub.open(cookie)
        assert opened is not None
        assert opened["cart"] == value
    finally:
        hub.close()


def test_max_bytes_refuses_an_oversized_session_with_a_clear_error(redis_url: str) -> None:
    """A save that would leave more data than MAX_BYTES raises DataError naming both sizes and
    writes nothing."""
    hub = SessionHub(build_settings(redis_url, session={"MAX_BYTES": 1000}))
    try:
        session, cookie = hub.create("alice", data={"a": 1})
        session["big"] = "x" * 2000
        with pytest.raises(DataError, match=r"SESSION.MAX_BYTES \(1000\)"):
            hub.save(session)
        opened = hub.open(cookie)
        assert opened is not None
        assert dict(opened) == {"a": 1}
        with pytest.raises(DataError, match="MAX_BYTES"):
            hub.create("alice", data={"big": "y" * 2000})
    finally:
        hub.close()
