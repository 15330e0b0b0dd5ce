"""The request path's shortcuts give the answers the long way gives: a save that reuses the JSON
it compared, the emptiness check that skips the delta."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sessionhub.session import DATA_PREFIX, Session, SessionRecord
from strategies import json_values

SID = "ab" * 16
data_keys = st.sampled_from(["a", "b", "cart", "ключ", "n"])
datas = st.dictionaries(data_keys, json_values, max_size=4)


def _fields(data: dict[str, Any], **meta: Any) -> dict[str, str]:
    record = SessionRecord(SID, "alice", 1, 2, 3, 4, "Mozilla/5.0 " * 9, "1.2.3.4", data, **meta)
    return record.to_fields()


@st.composite
def edited(draw: st.DrawFn) -> Session:
    """A session read from a store, then changed the ways handlers change one."""
    record = SessionRecord.from_fields(SID, _fields(draw(datas)))
    session = Session(record)
    if draw(st.booleans()):
        len(session)  # looked at
    for action, key, value in draw(
        st.lists(st.tuples(st.sampled_from(["set", "del", "clear"]), data_keys, json_values))
    ):
        if action == "set":
            session[key] = value
        elif action == "del":
            session.pop(key, None)
        else:
            session.clear()
    return session


@given(session=edited())
def test_emptied_is_modified_and_empty(session: Session) -> None:
    """The emptiness check answers what `modified and not len(session)` answers."""
    looked_at = session._data is not None
    expected = session.modified and (looked_at and not len(session))
    assert session.emptied == expected


@given(session=edited())
def test_a_save_keeps_the_json_it_wrote_and_counts_the_bytes_it_leaves(session: Session) -> None:
    """After a save the record compares with the JSON the save wrote or kept, nothing is left to
    save, and the size a save reports is that JSON's, key by key."""
    looked_at = session._data is not None
    delta = session.delta()
    data = dict(session)
    if looked_at:  # else nothing was looked at: nothing to save, no size to check
        assert delta.texts.keys() == data.keys()
        for key, text in delta.set.items():
            assert delta.texts[key[len(DATA_PREFIX) :]] == text
        size = sum(
            len(DATA_PREFIX) + len(k.encode()) + len(t.encode()) for k, t in delta.texts.items()
        )
        assert delta.data_bytes() == size
    session.mark_saved(delta)
    assert session.record.raw == (delta.texts if looked_at else session.record.raw)
    assert session.record.raw.keys() == data.keys()
    assert not session.delta()
