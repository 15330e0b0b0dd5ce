"""The Session mapping: change tracking and field encoding."""

from __future__ import annotations

import pytest

from sessionhub.exceptions import DataError
from sessionhub.session import LISTPACK_VALUE_BYTES, MAX_USER_AGENT, Session, SessionRecord


def _record(**data: object) -> SessionRecord:
    return SessionRecord("ab" * 16, "alice", 1, 1, 2, 3, "ua", "1.2.3.4", dict(data))


def test_record_round_trips_through_fields() -> None:
    """A record written as fields reads back identical."""
    record = _record(cart=[1, 2], name="x", nested={"a": None})
    assert SessionRecord.from_fields(record.storage_id, record.to_fields()) == record


@pytest.mark.parametrize(
    "user_agent",
    ["", "curl/8", "M" * 64, "Mozilla/5.0 " * 20, "Ünïcødé браузер 🚀" * 9, "x" * 2000],
)
def test_user_agent_is_stored_in_listpack_sized_pieces(user_agent: str) -> None:
    """Any User-Agent reads back whole (up to the cap) from pieces of at most 64 UTF-8 bytes."""
    record = SessionRecord("ab" * 16, None, 1, 1, 2, 3, user_agent)
    fields = record.to_fields()
    assert all(len(v.encode()) <= LISTPACK_VALUE_BYTES for k, v in fields.items() if k[0] == "a")
    assert (
        SessionRecord.from_fields(record.storage_id, fields).user_agent
        == user_agent[:MAX_USER_AGENT]
    )


def test_delta_holds_only_changes() -> None:
    """Setting one key and deleting another writes exactly those two fields."""
    session = Session(_record(a=1, b=2, c=3))
    assert not session.modified
    session["a"] = 10
    del session["b"]
    delta = session.delta()
    assert delta.set == {"d:a": "10"}
    assert delta.delete == ("d:b",)


def test_in_place_mutation_is_detected() -> None:
    """Appending to a list inside the session counts as a change of that key."""
    session = Session(_record(cart=[1]))
    session["cart"].append(2)
    assert session.delta().set == {"d:cart": "[1,2]"}


def test_unserialisable_value_fails_at_assignment() -> None:
    """A value JSON cannot hold is refused where it is set, not later at save time."""
    session = Session(_record())
    with pytest.raises(DataError):
        session["bad"] = object()


def test_invalidate_clears_data() -> None:
    """invalidate() empties the mapping and flags the session for destruction."""
    session = Session(_record(a=1))
    session.invalidate()
    assert session.invalidated
    assert len(session) == 0


def test_unreadable_field_is_dropped_not_fatal() -> None:
    """One corrupt data field does not make the whole session unreadable."""
    fields = _record(a=1).to_fields()
    fields["d:broken"] = "{not json"
    session = Session(SessionRecord.from_fields("ab" * 16, fields))
    assert dict(session) == {"a": 1}
    assert not session.delta()  # and a save leaves the stored field alone


def test_data_is_decoded_only_when_read() -> None:
    """Opening a session decodes none of its data; the first look decodes it all, once."""
    fields = _record(cart=[1, 2], theme="dark").to_fields()
    record = SessionRecord.from_fields("ab" * 16, fields)
    session = Session(record)
    assert not record.decoded
    assert not session.delta()
    assert session.user_id == "alice"
    assert not record.decoded  # metadata and an empty delta never needed the data
    assert session["theme"] == "dark"
    assert record.decoded
    session["cart"].append(3)  # an in-place change is still seen
    assert session.delta().set == {"d:cart": "[1,2,3]"}


def test_unchanged_scalars_are_not_rewritten_even_if_stored_differently() -> None:
    """A scalar nobody assigned stays out of the delta, whatever spelling the store holds."""
    fields = _record(n=1).to_fields()
    fields["d:n"] = " 1 "  # valid JSON another writer spelled its own way
    fields["d:s"] = '"caf\\u00e9"'
    session = Session(SessionRecord.from_fields("ab" * 16, fields))
    assert session["n"] == 1
    assert session["s"] == "café"
    assert not session.delta()


def test_assigned_scalars_are_compared_by_value() -> None:
    """Replacing a scalar counts only when its JSON differs: 1 -> True and 1 -> 1.0 do."""
    session = Session(_record(a=1, b=1, c=1, d="x"))
    session["a"] = True
    session["b"] = 1.0
    session["c"] = int("1")  # an equal value in a new object is no change
    session["d"] = "".join(["x"])
    assert session.delta().set == {"d:a": "true", "d:b": "1.0"}


def test_values_orjson_refuses_still_decode() -> None:
    """Integers beyond 64 bits and NaN, which the stdlib reads, are not dropped."""
    fields = _record().to_fields()
    fields["d:big"] = str(2**70)
    fields["d:nan"] = "NaN"
    session = Session(SessionRecord.from_fields("ab" * 16, fields))
    assert session["big"] == 2**70
    assert session["nan"] != session["nan"]  # NaN
    assert not session.delta()
