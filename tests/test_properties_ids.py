"""Properties of message ids: what id_key accepts, Redis accepts and orders the same way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from redis_server import RedisServer
from sessionhub.exceptions import InvalidCursorError
from sessionhub.inbox.ids import MAX_ID_PART, NO_ID, check_ids, id_key, valid_id
from strategies import any_text, bytes_as_text, texts

STREAM = "prop:ids"

parts = st.one_of(
    st.integers(min_value=0, max_value=MAX_ID_PART),
    st.sampled_from([0, 1, MAX_ID_PART - 1, MAX_ID_PART]),
)
valid_pairs = st.tuples(parts, parts)
# Leading zeros keep an id valid (Redis reads "007-1" as 7-1) while the text stays at most 20.
valid_ids = st.builds(
    lambda pair, pad: "-".join(str(p).zfill(min(20, len(str(p)) + pad)) for p in pair),
    valid_pairs,
    st.integers(min_value=0, max_value=3),
)
id_like = texts(st.sampled_from("0123456789-+ _٣\n\t.x"), max_size=45)
"""Text close to an id: digits, dashes, signs, spaces, non-ASCII digits, newlines."""
any_id_text = st.one_of(any_text, bytes_as_text, id_like, valid_ids)


@pytest.fixture(scope="module")
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the shared test server (this module only ever touches its own key)."""
    if not redis_server.is_running:
        redis_server.start()
    conn = redis_server.client(decode_responses=True)
    try:
        yield conn
    finally:
        conn.delete(STREAM)
        conn.close()


def _redis_form(pair: tuple[int, int]) -> str:
    return f"{pair[0]}-{pair[1]}"


@given(text=any_id_text)
def test_any_text_is_a_valid_id_or_check_ids_raises_one_line(text: str) -> None:
    """Any text is an id with both parts within 2^64-1, or check_ids refuses it in one line."""
    key = id_key(text)
    if valid_id(text):
        assert key != NO_ID
        assert all(0 <= part <= MAX_ID_PART for part in key)
        assert text.isascii()
        check_ids(text)
    else:
        assert key == NO_ID
        with pytest.raises(InvalidCursorError) as caught:
            check_ids("1-1", text, what="cursors")
        assert "\n" not in str(caught.value)
        assert "\r" not in str(caught.value)


@given(ids=st.lists(any_id_text, max_size=12))
def test_check_ids_raises_exactly_when_one_is_invalid(ids: list[str]) -> None:
    """check_ids passes a list of valid ids and refuses a list with any invalid one."""
    if all(valid_id(i) for i in ids):
        check_ids(*ids)
    else:
        with pytest.raises(InvalidCursorError):
            check_ids(*ids)


@given(message_id=valid_ids)
def test_redis_accepts_every_valid_id(client: redis.Redis, message_id: str) -> None:
    """Redis takes a valid id as an XADD id and as XRANGE bounds, and reads it as id_key does."""
    pair = id_key(message_id)
    client.delete(STREAM)
    if pair != (0, 0):  # XADD refuses 0-0 itself: a stream's ids start after it
        assert client.xadd(STREAM, {"b": "1"}, id=message_id) == _redis_form(pair)
    entries = client.xrange(STREAM, min=message_id, max=message_id)
    assert [entry_id for entry_id, _ in entries] == ([] if pair == (0, 0) else [_redis_form(pair)])


@given(ids=st.lists(valid_ids, min_size=1, max_size=10))
def test_id_key_orders_ids_as_redis_does(client: redis.Redis, ids: list[str]) -> None:
    """Ids added in id_key order are all accepted by XADD, and XRANGE returns them in that order."""
    ordered = sorted({id_key(i): i for i in ids if id_key(i) != (0, 0)}.items())
    client.delete(STREAM)
    for _, message_id in ordered:
        client.xadd(STREAM, {"b": "1"}, id=message_id)
    stored = [entry_id for entry_id, _ in client.xrange(STREAM)]
    assert stored == [_redis_form(pair) for pair, _ in ordered]
    assert [id_key(i) for i in stored] == [pair for pair, _ in ordered]


@given(a=valid_ids, b=valid_ids)
def test_redis_refuses_an_id_not_above_the_last(client: redis.Redis, a: str, b: str) -> None:
    """XADD of b after a succeeds exactly when id_key(b) > id_key(a), as Redis orders ids."""
    if id_key(a) == (0, 0):
        return
    client.delete(STREAM)
    client.xadd(STREAM, {"b": "1"}, id=a)
    try:
        client.xadd(STREAM, {"b": "2"}, id=b)
        accepted = True
    except redis.ResponseError:
        accepted = False
    assert accepted == (id_key(b) > id_key(a))
