"""Property tests for load_settings: whatever the file and environment hold, the result is
Settings or a one-line ConfigError that never echoes a secret."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from sessionhub.config import Settings, load_settings
from sessionhub.exceptions import ConfigError

# Bounded so the file runs in seconds; no example database, so nothing is written to the checkout.
BOUNDED = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SECTIONS: dict[str, list[str]] = {
    name.upper(): [str(field.alias) for field in field_info.annotation.model_fields.values()]
    for name, field_info in Settings.model_fields.items()
    if isinstance(field_info.annotation, type) and issubclass(field_info.annotation, BaseModel)
}
TOP_KEYS = [*SECTIONS, "SECRET_KEY", "USERS"]
ENV_NAMES = [
    *(f"SESSIONHUB_{section}__{key}" for section, keys in SECTIONS.items() for key in keys),
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_DB",
    "REDIS_PASSWORD",
    "REDIS_URL",
    "SECRET_KEY",
    "SESSIONHUB_ADMIN_API_KEYS",
    "SESSIONHUB_ENV",
    "SESSIONHUB_CONFIG",
]
# Only ever placed where secrets live; no message may contain it.
MARKER = "Marker-s3cret-0123456789"


def repeated(most: int) -> st.SearchStrategy[str]:
    return st.builds(
        lambda piece, times: piece * times, st.text(min_size=1, max_size=3), st.integers(1, most)
    )


huge_text = repeated(3_000)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | repeated(300)  # long enough to be clipped; longer ones only slow PyYAML down
    | st.binary(max_size=8)
    | st.dates()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)
# YAML that PyYAML parses into something Python itself refuses, or that tests odd scalars.
tricky_scalars = st.sampled_from(
    ["null", "~", "", "true", "yes", "0", "-1", "1.5", ".inf", ".nan", "[a, b]", "{a: 1}",
     "9" * 5000, "[" * 600, "2001-02-30", "'unclosed", "!!binary AAA", "&a [*a]", "a: b: c"]
)  # fmt: skip


def keys_of(known: list[str]) -> st.SearchStrategy[Any]:
    return st.sampled_from(known) | st.text(max_size=12) | st.integers() | st.none()


def section_of(name: str) -> st.SearchStrategy[Any]:
    return st.dictionaries(keys_of(SECTIONS[name]), values, max_size=4) | values


documents = st.fixed_dictionaries(
    {},
    optional={
        **{name: section_of(name) for name in SECTIONS},
        "SECRET_KEY": values,
        "USERS": st.lists(
            st.dictionaries(keys_of(["USERNAME", "PASSWORD_HASH"]), values, max_size=3) | values,
            max_size=3,
        ),
    },
) | st.dictionaries(keys_of(TOP_KEYS), values, max_size=3)
environments = st.dictionaries(
    st.sampled_from(ENV_NAMES) | st.text(max_size=16).map(lambda name: "SESSIONHUB_" + name),
    st.text() | huge_text | tricky_scalars,
    max_size=5,
)


@pytest.fixture(scope="module", autouse=True)
def _empty_cwd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Run in an empty directory so no config.yaml of the checkout is read."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("cwd"))
        yield


def outcome(load: Callable[[], Settings]) -> str | None:
    """Run load; return the ConfigError message (None on success), which must be one line."""
    try:
        load()
    except ConfigError as exc:
        message = str(exc)
        assert message
        assert message.splitlines() == [message]
        return message
    return None


def write_yaml(document: object) -> Path:
    path = Path("config.yaml")
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


@BOUNDED
@given(documents)
def test_any_yaml_document_loads_or_fails_in_one_line(document: object) -> None:
    """Any YAML document, with any keys and values in any section, loads or is one ConfigError."""
    path = write_yaml(document)
    outcome(lambda: load_settings(path, env={}))


@BOUNDED
@given(st.text() | huge_text | tricky_scalars)
def test_any_text_file_loads_or_fails_in_one_line(text: str) -> None:
    """Arbitrary text as the config file, valid YAML or not, loads or is one ConfigError."""
    path = Path("config.yaml")
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    outcome(lambda: load_settings(path, env={}))


@BOUNDED
@given(st.binary(max_size=200))
def test_any_bytes_file_loads_or_fails_in_one_line(data: bytes) -> None:
    """Arbitrary bytes as the config file (not UTF-8, NUL, BOM) load or are one ConfigError."""
    path = Path("config.yaml")
    path.write_bytes(data)
    outcome(lambda: load_settings(path, env={}))


@BOUNDED
@given(environments)
def test_any_environment_loads_or_fails_in_one_line(env: dict[str, str]) -> None:
    """Any mix of known and misspelt variables with any values loads or is one ConfigError."""
    Path("config.yaml").unlink(missing_ok=True)
    outcome(lambda: load_settings(env=env))


@BOUNDED
@given(documents, environments)
def test_file_and_environment_together(document: object, env: dict[str, str]) -> None:
    """Overrides on top of any document load or are one ConfigError."""
    write_yaml(document)
    env.pop("SESSIONHUB_CONFIG", None)
    outcome(lambda: load_settings(env=env))


secret_values = st.sampled_from([MARKER, MARKER * 3, f" {MARKER}", [MARKER], {"x": MARKER}])
secret_env_names = st.sampled_from(
    ["SECRET_KEY", "REDIS_PASSWORD", "SESSIONHUB_REDIS__PASSWORD", "SESSIONHUB_ADMIN_API_KEYS",
     "SESSIONHUB_ADMIN__API_KEYS"]
)  # fmt: skip


@BOUNDED
@given(
    documents,
    st.fixed_dictionaries(
        {},
        optional={
            "SECRET_KEY": secret_values,
            "REDIS": st.fixed_dictionaries({"PASSWORD": secret_values}),
            "ADMIN": st.fixed_dictionaries({"API_KEYS": st.lists(secret_values, max_size=2)}),
            "USERS": st.lists(
                st.fixed_dictionaries({"USERNAME": st.text(), "PASSWORD_HASH": secret_values}),
                max_size=2,
            ),
        },
    ),
    st.dictionaries(secret_env_names, st.sampled_from([MARKER, f"[{MARKER}", f"{MARKER}, x"])),
)
def test_secrets_never_appear_in_messages(
    document: object, secrets: dict[str, Any], env: dict[str, str]
) -> None:
    """Secrets from the file or the environment are masked in every error message."""
    if isinstance(document, dict):
        document = {**document, **secrets}
    write_yaml(document)
    message = outcome(lambda: load_settings(env=env))
    assert MARKER not in (message or "")


def test_huge_value_is_clipped_in_the_message() -> None:
    """A value of 100,000 characters is reported in one short line."""
    write_yaml({"SESSION": {"EXPIRES": "x" * 100_000}})
    message = outcome(lambda: load_settings(env={}))
    assert message is not None
    assert len(message) < 200


def test_argon2_accepts_every_hash_the_config_accepts() -> None:
    """PASSWORD_HASH is checked without argon2, but never accepts a hash argon2 cannot read."""
    argon2 = pytest.importorskip("argon2")
    from sessionhub.config import _ARGON2_PHC, UserEntry

    @BOUNDED
    @given(st.from_regex(_ARGON2_PHC, fullmatch=True))
    def check(phc: str) -> None:
        UserEntry.model_validate({"USERNAME": "alice", "PASSWORD_HASH": phc})
        argon2.extract_parameters(phc)

    check()
