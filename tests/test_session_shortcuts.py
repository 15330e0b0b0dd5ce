"""The request path's shortcuts give the answers the long way gives: a cached parse, a save that
reuses the JSON it compared, the emptiness check that skips the delta."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessionhub.jsontext import compact
from sessionhub.session import DATA_PREFIX, Session, SessionRecord, StoredFields, encoded
from sessionhub.stores.memory import MemoryStore
from strategies import json_like, json_values

STORAGE_ID = "ab" * 16
JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
"""The standard library's compact JSON, which stored values have always been written in."""
data_keys = st.sampled_from(["a", "b", "cart", "ключ", "n"])
datas = st.dictionaries(data_keys, json_values, max_size=4)


def _fields(data: dict[str, Any], **meta: Any) -> dict[str, str]:
    record = SessionRecord(
        STORAGE_ID, "alice", 1, 2, 3, 4, "Mozilla/5.0 " * 9, "1.2.3.4", data, **meta
    )
    return record.to_fields()


def test_stored_fields_are_parsed_once_and_each_read_gets_its_own_record() -> None:
    """Two reads of one cached copy parse it once; changing one read's record leaves the next."""
    fields = StoredFields(_fields({"cart": [1], "n": 1}, authenticated_ms=5))
    first = SessionRecord.from_fields(STORAGE_ID, fields)
    parse = fields.parsed
    assert first == SessionRecord.from_fields(STORAGE_ID, dict(fields))
    first.raw["n"] = "99"
    session = Session(first)
    session["cart"].append(2)
    session.mark_saved(session.delta())
    second = SessionRecord.from_fields(STORAGE_ID, fields)
    assert fields.parsed is parse
    assert second is not first
    assert second == SessionRecord.from_fields(STORAGE_ID, dict(fields))
    assert dict(Session(second)) == {"cart": [1], "n": 1}


@given(
    data=datas,
    changed=datas,
    removed=st.lists(data_keys, max_size=3),
    meta=st.booleans(),
)
def test_a_save_carries_the_parse_only_while_it_stays_what_a_parse_gives(
    data: dict[str, Any], changed: dict[str, Any], removed: list[str], meta: bool
) -> None:
    """After a write, the carried parse equals a parse of the new fields; a write that touches
    more than data fields carries none."""
    fields = StoredFields(_fields(data))
    SessionRecord.from_fields(STORAGE_ID, fields)  # parsed and kept
    set_fields = {DATA_PREFIX + k: encoded(v) for k, v in changed.items()}
    if meta:
        set_fields["u"] = "bob"
    after = fields.replaced(set_fields, tuple(DATA_PREFIX + k for k in removed))
    assert (after.parsed is None) == meta
    assert SessionRecord.from_fields(STORAGE_ID, after) == SessionRecord.from_fields(
        STORAGE_ID, dict(after)
    )
    assert dict(after) == {
        **{k: v for k, v in fields.items() if k[2:] not in removed or k[:2] != DATA_PREFIX},
        **set_fields,
    }


@st.composite
def edited(draw: st.DrawFn) -> Session:
    """A session read from a store, then changed the ways handlers change one."""
    record = SessionRecord.from_fields(STORAGE_ID, _fields(draw(datas)))
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


def test_the_cache_keeps_a_parse_across_its_own_saves_but_not_across_an_expiry_change() -> None:
    """A cached copy read, saved (data only) and read again is parsed once; a save that sets the
    expiry (Django's set_expiry) is parsed again, with the new expiry."""
    memory = MemoryStore(cache_size=10)
    memory.put(STORAGE_ID, _fields({"n": 1}), 10**15, confirmed=1, link=1)
    cached = memory.cached(STORAGE_ID, 0, 1, None)
    assert isinstance(cached, StoredFields)
    SessionRecord.from_fields(STORAGE_ID, cached)
    assert memory.update(STORAGE_ID, {"d:n": "2"}, (), 0)
    saved = memory.cached(STORAGE_ID, 0, 1, None)
    assert isinstance(saved, StoredFields)
    assert saved.parsed is not None
    assert dict(Session(SessionRecord.from_fields(STORAGE_ID, saved))) == {"n": 2}
    assert memory.update(STORAGE_ID, {}, (), 0, expires_ms=10**14)
    moved = memory.cached(STORAGE_ID, 0, 1, None)
    assert isinstance(moved, StoredFields)
    assert moved.parsed is None
    assert SessionRecord.from_fields(STORAGE_ID, moved).expires_ms == 10**14


@pytest.mark.parametrize(
    "value",
    [2**64, -(2**63) - 1, 123456789012345678901234567890, [1, -(2**70)], {"id": 10**30}],
)
def test_integers_beyond_64_bits_read_back_exact(value: Any) -> None:
    """A stored integer that does not fit 64 bits reads back as that integer, not as a float."""
    record = SessionRecord.from_fields(STORAGE_ID, _fields({"big": value}))
    assert record.load_data() == {"big": value}
    assert repr(record.load_data()["big"]) == repr(value)
    session = Session(record)
    assert session["big"] == value
    assert not session.delta()  # read and left alone: nothing to write back


def _encoded_or_error(encode: Any, value: Any) -> str:
    try:
        return str(encode(value))
    except (TypeError, ValueError) as exc:
        return type(exc).__name__


@given(value=st.one_of(json_values, json_like, st.integers(), st.booleans(), st.none()))
def test_compact_writes_what_the_json_encoder_writes(value: Any) -> None:
    """The scalar shortcut gives the standard encoder's text, or its error, for any value."""
    assert _encoded_or_error(compact, value) == _encoded_or_error(JSON_ENCODER.encode, value)


def test_compact_refuses_an_integer_the_encoder_refuses() -> None:
    """An integer too long to print is refused as the encoder refuses it."""
    assert _encoded_or_error(compact, 10**5000) == "ValueError"
