"""Cookie hardening settings: the ``__Host-``/``__Secure-`` prefixes and ``Partitioned``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sessionhub.config import SessionSettings, load_settings
from sessionhub.exceptions import ConfigError

HOST = {"COOKIE_NAME": "__Host-session", "COOKIE_SECURE": True}


def _load(tmp_path: Path, **session: object) -> SessionSettings:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"SESSION": session}))
    return load_settings(path, env={}).session


@pytest.mark.parametrize(
    ("session", "message"),
    [
        (
            {"COOKIE_NAME": "__Host-session"},
            "SESSION.COOKIE_SECURE = false: must be true for the name '__Host-session'",
        ),
        ({**HOST, "COOKIE_PATH": "/app"}, "SESSION.COOKIE_PATH = '/app': must be / for the name"),
        (
            {**HOST, "COOKIE_DOMAIN": "example.com"},
            "SESSION.COOKIE_DOMAIN = 'example.com': must be null",
        ),
        (
            {"COOKIE_NAME": "__Secure-id"},
            "SESSION.COOKIE_SECURE = false: must be true for the name '__Secure-id'",
        ),
        (
            {"COOKIE_PARTITIONED": True},
            "SESSION.COOKIE_SECURE = false: must be true for a Partitioned cookie",
        ),
        (
            {"REMEMBER_EXPIRES": 100, "REMEMBER_ABSOLUTE_LIFETIME": 50},
            "REMEMBER_ABSOLUTE_LIFETIME = 50: must be >= REMEMBER_EXPIRES (100)",
        ),
    ],
)
def test_a_cookie_browsers_would_drop_is_a_start_up_error(
    tmp_path: Path, session: dict[str, object], message: str
) -> None:
    """Settings whose cookie a browser would refuse fail at start, naming the key and the rule."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        _load(tmp_path, **session)


def test_a_host_prefixed_partitioned_cookie_is_accepted(tmp_path: Path) -> None:
    """A ``__Host-`` name with Secure, Path=/ and no Domain loads, and Partitioned is passed on."""
    ss = _load(tmp_path, **HOST, COOKIE_PARTITIONED=True)
    assert ss.cookie_attributes()["partitioned"] is True
    assert "partitioned" not in _load(tmp_path).cookie_attributes()
