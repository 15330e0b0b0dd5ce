"""The Session mapping: change tracking and field encoding."""

from __future__ import annotations

import pytest

from sessionhub.exceptions import StoreError
from sessionhub.session import Session, SessionRecord


def _record(**data: object) -> SessionRecord:
    return SessionRecord("ab" * 16, "alice", 1, 1, 2, 3, "ua", "1.2.3.4", dict(data))


def test_record_round_trips_through_fields() -> None:
    """A record written as fields reads back identical."""
    record = _record(cart=[1, 2], name="x", nested={"a": None})
    assert SessionRecord.from_fields(record.sid, record.to_fields()) == record


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
    with pytest.raises(StoreError):
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
    assert SessionRecord.from_fields("ab" * 16, fields).data == {"a": 1}
