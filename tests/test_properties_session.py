"""Properties of session data: any key and value is stored and read back equal, or DataError."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sessionhub.exceptions import DataError, InvalidMessageError
from sessionhub.hub import SessionHub
from sessionhub.inbox.message import check_body
from strategies import any_text, huge_text, json_like, json_values, surrogate_text

keys = st.one_of(any_text, huge_text, surrogate_text, st.integers(), st.none(), st.binary())
values = st.one_of(json_values, json_like, huge_text, surrogate_text)


@given(items=st.lists(st.tuples(keys, values), max_size=6))
def test_session_data_reads_back_equal_or_raises_data_error(
    module_hub: SessionHub, items: list[tuple[Any, Any]]
) -> None:
    """Each assignment is refused with DataError or kept; save, reopen: what was kept comes back."""
    session, cookie = module_hub.create("alice")
    kept: dict[str, Any] = {}
    for key, value in items:
        try:
            session[key] = value
        except DataError:
            assert key not in kept or kept[key] == session[key]
            continue
        kept[key] = value
    assert module_hub.save(session)
    reopened = module_hub.open(cookie)
    assert reopened is not None
    assert dict(reopened) == kept


@given(body=values)
def test_message_body_is_accepted_or_invalid_message(body: Any) -> None:
    """A message body is JSON within the size limit, or InvalidMessageError: nothing else."""
    with contextlib.suppress(InvalidMessageError):
        assert check_body(body, 4096) is body
