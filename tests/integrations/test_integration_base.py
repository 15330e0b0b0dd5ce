"""The framework-free request session every adapter shares, over a real Redis."""

from __future__ import annotations

import pytest

from helpers import build_settings
from sessionhub.hub import SessionHub
from sessionhub.integrations.base import NO_COOKIE_CHANGE, RequestSession, commit


def test_a_request_that_never_reads_the_data_decodes_and_writes_nothing(redis_url: str) -> None:
    """Ending a request whose handler looked only at who is signed in leaves the session's data
    undecoded and sends Redis nothing beyond the load."""
    hub = SessionHub(build_settings(redis_url))
    try:
        _, cookie = hub.create("alice", data={"cart": [1, 2], "theme": "dark"})
        session = hub.open(cookie)
        assert session is not None
        rs = RequestSession(session, had_cookie=True)
        assert rs.user_id == "alice"
        op = commit(hub.manager, rs)
        with pytest.raises(StopIteration) as finished:  # it ends without yielding a call
            next(op)
        assert finished.value.value == NO_COOKIE_CHANGE
        assert not session.record.decoded
        reopened = hub.open(cookie)
        assert reopened is not None
        assert dict(reopened) == {"cart": [1, 2], "theme": "dark"}
    finally:
        hub.close()
