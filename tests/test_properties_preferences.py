"""Properties of settings validation: any document is valid and reads back, or is refused."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from helpers import login, service_settings
from redis_server import RedisServer
from sessionhub.exceptions import InvalidPreferencesError
from sessionhub.hub import SessionHub
from sessionhub.preferences import DEFAULTS, MAX_CUSTOM_KEY, THEMES, PreferencesOps
from sessionhub.service.app import create_app
from strategies import any_text, huge_text, json_like, json_values, nested, surrogate_text

LANGUAGES = ["en", "zh-CN", "pt-BR", "sr-Latn-RS", "x-private", "en-US-x-twain"]
ZONES = ["UTC", "Europe/Paris", "Asia/Shanghai", "America/Argentina/Buenos_Aires"]

custom_keys = st.text(min_size=1, max_size=MAX_CUSTOM_KEY)
valid_docs = st.fixed_dictionaries(
    {},
    optional={
        "theme": st.sampled_from(THEMES),
        "language": st.sampled_from(LANGUAGES),
        "timezone": st.sampled_from(ZONES),
        "notifications": st.booleans(),
        "custom": st.dictionaries(custom_keys, json_values, max_size=8),
    },
)
"""Documents the schema allows (within the default custom limits for small values)."""

anything = st.one_of(json_like, any_text, huge_text, surrogate_text)
docs = st.one_of(
    valid_docs,
    st.fixed_dictionaries(
        {},
        optional={
            "theme": st.sampled_from(THEMES) | anything,
            "language": st.sampled_from([*LANGUAGES, "en\n", "zh-CN\n", "e", "a" * 36]) | anything,
            "timezone": st.sampled_from([*ZONES, "utc", "UTC\n", "../etc"]) | anything,
            "notifications": st.booleans() | anything,
            "custom": st.dictionaries(st.text(max_size=70) | surrogate_text, anything, max_size=70)
            | st.builds(nested, st.integers(0, 3000))
            | anything,
        },
    ),
    st.dictionaries(any_text, anything, max_size=6),
)
"""Documents of every kind: allowed values mixed with anything JSON (or a caller) can produce."""

users = (f"user{n}" for n in itertools.count())


def _schema_holds(doc: dict[str, Any]) -> None:
    """What a document validate() let through must satisfy, checked independently."""
    assert set(doc) <= set(DEFAULTS)
    if "language" in doc:
        assert re.fullmatch(r"[A-Za-z0-9-]{1,35}", doc["language"])
    if "timezone" in doc:
        assert doc["timezone"].isprintable()
    if "custom" in doc:
        # Storable: strict JSON (no NaN) that UTF-8 can carry, and it reads back equal.
        text = json.dumps(doc["custom"], allow_nan=False, ensure_ascii=False)
        assert json.loads(text.encode()) == doc["custom"]


@given(doc=docs)
def test_validate_returns_a_schema_document_or_raises_invalid_preferences(
    module_hub: SessionHub, doc: dict[str, Any]
) -> None:
    """validate() answers the document itself, meeting the schema, or InvalidPreferencesError."""
    ops: PreferencesOps = module_hub.features.preferences
    try:
        valid = ops.validate(doc)
    except InvalidPreferencesError as exc:
        errors = exc.errors
    else:
        assert valid is doc
        _schema_holds(valid)
        return
    assert errors


@given(doc=docs | st.none() | json_like)
def test_replace_stores_a_valid_document_that_reads_back_equal(
    module_hub: SessionHub, doc: Any
) -> None:
    """PUT semantics: a valid document is stored and read back equal; else nothing changes."""
    user = next(users)
    module_hub.preferences.replace(user, {"theme": "dark"})
    try:
        answered = module_hub.preferences.replace(user, doc)
    except InvalidPreferencesError:
        assert module_hub.preferences.get(user) == {**DEFAULTS, "theme": "dark"}
        return
    expected = {k: v for k, v in doc.items() if v is not None}
    assert answered == {**DEFAULTS, **expected, "custom": expected.get("custom", {})}
    assert module_hub.preferences.get(user) == answered


@given(first=valid_docs, patch=docs | json_like)
def test_patch_merges_or_raises_and_reads_back(
    module_hub: SessionHub, first: Any, patch: Any
) -> None:
    """PATCH semantics: the merged document is what a later read sees, or nothing changes."""
    user = next(users)
    before = module_hub.preferences.replace(user, first)
    try:
        answered = module_hub.preferences.patch(user, patch)
    except InvalidPreferencesError:
        assert module_hub.preferences.get(user) == before
        return
    assert module_hub.preferences.get(user) == answered
    _schema_holds(answered)


@given(doc=valid_docs)
def test_every_valid_document_is_accepted(module_hub: SessionHub, doc: dict[str, Any]) -> None:
    """A document built from the schema's own values is never refused."""
    user = next(users)
    assert module_hub.preferences.replace(user, doc) == module_hub.preferences.get(user)


@pytest.fixture(scope="module")
def http(redis_server: RedisServer) -> Iterator[tuple[TestClient, str]]:
    """The service on the shared test server, and a logged-in cookie of alice."""
    if not redis_server.is_running:
        redis_server.start()
    client = TestClient(
        create_app(service_settings(redis_server.url)), raise_server_exceptions=False
    )
    with client:
        yield client, login(client)


@given(doc=docs, method=st.sampled_from(["PUT", "PATCH"]))
def test_http_settings_answer_200_or_422_never_500(
    http: tuple[TestClient, str], doc: Any, method: str
) -> None:
    """Whatever JSON a client sends as settings (surrogate escapes, NaN): 200, or a 4xx that
    names the problem (400 for JSON the service refuses to read), never 500."""
    client, _ = http  # the client keeps alice's cookie
    try:
        body = json.dumps(doc)  # escapes surrogates as \\udxxx, writes NaN: json.loads takes both
    except (TypeError, ValueError, RecursionError):
        return  # not expressible as a request body
    response = client.request(
        method,
        "/api/me/settings",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code in (200, 400, 413, 422), response.text
    if response.status_code == 400:
        assert response.json()["error"]["code"] in ("invalid_json", "json_too_deep")
