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


def test_request_session_is_a_dict_that_json_and_merges_see(redis_url: str) -> None:
    """The request session is a real dict: json.dumps, |=, popitem and dict() see its values,
    and a save still writes only the keys that changed."""
    import json

    hub = SessionHub(build_settings(redis_url))
    try:
        _, cookie = hub.create(data={"a": 1, "b": [2]})
        session = hub.open(cookie)
        assert session is not None
        rs = RequestSession(session, had_cookie=True)
        assert isinstance(rs, dict)
        rs.mark_accessed()  # what Starlette's request.session does before the handler
        assert json.loads(json.dumps({"session": rs})) == {"session": {"a": 1, "b": [2]}}
        rs |= {"c": 3}
        assert rs.popitem() == ("c", 3)
        rs["b"].append(4)
        assert dict(rs) == {"a": 1, "b": [2, 4]}
        assert rs.session.delta().set == {"d:b": "[2,4]"}
        assert hub.run(commit(hub.manager, rs)) == NO_COOKIE_CHANGE
        reopened = hub.open(cookie)
        assert reopened is not None
        assert dict(reopened) == {"a": 1, "b": [2, 4]}
    finally:
        hub.close()


def test_request_session_from_a_mapping_starts_unmodified() -> None:
    """Built from a mapping (as Starlette's Session is), the data is the baseline; a missing pop
    is neither a change nor an access."""
    rs = RequestSession({"a": "1"})
    assert not rs.modified
    rs.pop("missing", None)
    assert not rs.accessed
    assert not rs.modified
    rs.setdefault("a", "2")
    assert not rs.modified
    rs.setdefault("b", "2")
    assert rs.modified
