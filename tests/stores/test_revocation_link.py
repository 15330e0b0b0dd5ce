"""The blocking hub's revocation link, read straight off its socket: a refusal is said, and
messages that arrive together are each applied."""

from __future__ import annotations

import asyncio
import logging
import secrets

import pytest

from helpers import build_settings, wait_for
from redis_server import RedisServer
from sessionhub.hub import AsyncSessionHub, SessionHub


def test_a_subscription_the_acl_refuses_is_said_once_and_vouches_for_nothing(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL user without the channel: the log names the channel once, and no read is served
    from the cache (nothing would tell this process of a logout elsewhere)."""
    user, password = f"nochannel-{secrets.token_hex(4)}", secrets.token_hex(16)
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "+@all")
    admin.execute_command("ACL", "SETUSER", user, "resetchannels")
    hub = None
    try:
        with caplog.at_level(logging.ERROR, logger="sessionhub.revocations"):
            address = {"HOST": redis_server.host, "PORT": redis_server.port}  # a URL would win
            settings = build_settings(
                None,
                session={"TYPE": "redis"},
                redis={**address, "USERNAME": user, "PASSWORD": password},
            )
            hub = SessionHub(settings)
            _, cookie = hub.create("alice")
            assert hub.open(cookie) is not None
            assert hub.open(cookie) is not None
            refusals = [r for r in caplog.records if "refused the revocation channel" in r.message]
            assert len(refusals) == 1
            assert "session:revoked" in refusals[0].message
        core = hub.manager.core
        assert not core.coherence.up
        assert core.cache_hits == 0
    finally:
        if hub is not None:
            hub.close()
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def test_messages_read_in_one_go_are_each_applied(redis_server: RedisServer) -> None:
    """Many sessions changed and logged out elsewhere at once: every copy cached here goes."""
    reader = SessionHub(build_settings(redis_server.url))
    writer = SessionHub(build_settings(redis_server.url))
    try:
        cookies = [reader.create("alice", data={"n": 0})[1] for _ in range(40)]
        for cookie in cookies:
            assert reader.open(cookie) is not None  # cached here
        admin = redis_server.client()
        pipe = admin.pipeline(transaction=False)
        channel = reader.manager.core.redis_ops.keys.revoked()  # type: ignore[union-attr]
        storage_ids = [reader.manager.storage_id_for_cookie(cookie) for cookie in cookies]
        for storage_id in storage_ids[::2]:
            pipe.publish(channel, storage_id)  # a destroy elsewhere
        for storage_id in storage_ids[1::2]:
            pipe.publish(channel, f"{storage_id}:{writer.manager.core.writer}")  # a write elsewhere
        pipe.execute()
        admin.close()
        memory = reader.manager.core.memory
        wait_for(lambda: all(memory.peek(storage_id, 0) is None for storage_id in storage_ids))
    finally:
        reader.close()
        writer.close()


def test_the_asyncio_hub_says_a_refused_subscription_once_and_vouches_for_nothing(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The asyncio hub's link, refused by the ACL: said once, and no read served from cache."""
    user, password = f"nochannel-{secrets.token_hex(4)}", secrets.token_hex(16)
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "+@all")
    admin.execute_command("ACL", "SETUSER", user, "resetchannels")
    address = {"HOST": redis_server.host, "PORT": redis_server.port}

    async def main() -> tuple[bool, int]:
        settings = build_settings(
            None,
            session={"TYPE": "redis"},
            redis={**address, "USERNAME": user, "PASSWORD": password},
        )
        hub = AsyncSessionHub(settings)
        try:
            _, cookie = await hub.create("alice")
            assert await hub.open(cookie) is not None
            assert await hub.open(cookie) is not None
            await asyncio.sleep(0.3)  # time for the subscriber to try again, and say nothing more
            core = hub.manager.core
            return core.coherence.up, core.cache_hits
        finally:
            await hub.aclose()

    try:
        with caplog.at_level(logging.ERROR, logger="sessionhub.revocations"):
            assert asyncio.run(main()) == (False, 0)
        refusals = [r for r in caplog.records if "refused the revocation channel" in r.message]
        assert len(refusals) == 1
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def test_the_asyncio_hub_applies_each_message_read_in_one_go(redis_server: RedisServer) -> None:
    """Many logouts and writes elsewhere at once reach the asyncio hub: every copy here goes."""

    async def main() -> None:
        hub = AsyncSessionHub(build_settings(redis_server.url))
        try:
            cookies = [(await hub.create("alice", data={"n": 0}))[1] for _ in range(40)]
            for cookie in cookies:
                assert await hub.open(cookie) is not None  # cached here
            storage_ids = [hub.manager.storage_id_for_cookie(cookie) for cookie in cookies]
            channel = hub.manager.core.redis_ops.keys.revoked()  # type: ignore[union-attr]
            admin = redis_server.client()
            pipe = admin.pipeline(transaction=False)
            for storage_id in storage_ids[::2]:
                pipe.publish(channel, storage_id)
            for storage_id in storage_ids[1::2]:
                pipe.publish(channel, f"{storage_id}:another-writer")
            pipe.execute()
            admin.close()
            memory = hub.manager.core.memory
            for _ in range(200):
                if all(memory.peek(storage_id, 0) is None for storage_id in storage_ids):
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("copies still cached 2 s after their messages")
        finally:
            await hub.aclose()

    asyncio.run(main())
