"""Hypothesis strategies shared by the property tests (tests/test_properties_*.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def texts(alphabet: st.SearchStrategy[str], *, min_size: int = 0, max_size: int) -> Any:
    """Strings of ``alphabet`` (st.text drops surrogates from any alphabet, so it cannot)."""
    return st.lists(alphabet, min_size=min_size, max_size=max_size).map("".join)


# Surrogates are left out of Hypothesis's text, yet json.loads turns "\ud800" in a request body
# into one, and a Python caller can pass any str: they are drawn on purpose.
any_char = st.characters(codec=None) | st.characters(categories=["Cs"])
any_text = texts(any_char, max_size=80)
huge_text = st.builds(
    lambda t, n: t * n, texts(any_char, min_size=1, max_size=8), st.integers(40, 4000)
)
"""Long text, made by repeating a short one: drawing thousands of characters one by one is slow."""
surrogate_text = st.tuples(
    st.text(max_size=5), st.characters(categories=["Cs"]), st.text(max_size=5)
).map("".join)
"""Text with at least one lone surrogate: a valid str, yet no UTF-8 bytes can carry it."""

# What a request body or header can carry: bytes as HTTP servers decode them.
bytes_as_text = st.one_of(
    st.binary(max_size=400).map(lambda b: b.decode("latin-1")),
    st.binary(max_size=400).map(lambda b: b.decode("utf-8", "surrogateescape")),
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5)
    ),
    max_leaves=25,
)
"""Values JSON can hold (what json.loads could return), nested, with unicode text."""

not_json_leaves = st.one_of(
    st.just(float("nan")),
    st.just(float("inf")),
    st.just(-float("inf")),
    st.builds(pow, st.just(10), st.just(5000)),  # past Python's int/str conversion limit
    surrogate_text,
    st.builds(object),
    st.sets(st.integers(), max_size=3),
    st.binary(max_size=5),
)
"""Values that are not JSON, or that no UTF-8 JSON text can carry (lone surrogates)."""

json_like: st.SearchStrategy[Any] = st.recursive(
    scalars | not_json_leaves | texts(any_char, max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(texts(any_char, max_size=20), inner, max_size=4)
    ),
    max_leaves=20,
)
"""JSON values with anything a Python caller might slip into them."""


def nested(depth: int, leaf: Any = 1) -> Any:
    """``leaf`` inside ``depth`` alternating objects and arrays."""
    value = leaf
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value
