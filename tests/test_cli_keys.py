"""`sessionhub keys new` and `sessionhub keys rotate` on a real Redis."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import redis
import yaml

from helpers import build_settings
from sessionhub.cli import main
from sessionhub.hub import SessionHub

K1 = {"ID": "k1", "KEY": base64.b64encode(os.urandom(32)).decode()}
K2 = {"ID": "k2", "KEY": base64.b64encode(os.urandom(32)).decode()}


def _config(tmp_path: Path, redis_url: str, keys: list[dict[str, str]]) -> str:
    path = tmp_path / "config.yaml"
    data = {
        "SECRET_KEY": "test-secret-key-0123456789",
        "REDIS": {"URL": redis_url},
        "ENCRYPTION": {"KEYS": keys},
    }
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_keys_new_prints_a_usable_key(capsys: pytest.CaptureFixture[str]) -> None:
    """`keys new` prints 32 random bytes in base64, which ENCRYPTION.KEYS accepts."""
    assert main(["keys", "new"]) == 0
    key = capsys.readouterr().out.strip()
    assert len(base64.b64decode(key)) == 32
    build_settings(encryption={"KEYS": [{"ID": "n", "KEY": key}]})


def test_keys_rotate_reencrypts_everything_and_resumes_to_completion(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """After `keys rotate`, every session value is under the first key, a progress bar was
    printed, and the sessions read back with only that key listed."""
    hub = SessionHub(build_settings(redis_url, encryption={"KEYS": [K1]}))
    cookies = []
    for i in range(30):
        _, cookie = hub.create(f"user{i}", data={"n": i}, user_agent=f"agent {i}")
        hub.preferences.patch(f"user{i}", {"theme": "dark"})
        cookies.append(cookie)
    hub.close()

    assert (
        main(["keys", "rotate", "--batch", "7", "--config", _config(tmp_path, redis_url, [K2, K1])])
        == 0
    )
    out = capsys.readouterr()
    assert "[" + "#" * 30 + "]" in out.err
    assert "rotation to key 'k2' complete" in out.out

    client = redis.Redis.from_url(redis_url)
    try:
        assert not client.exists("session:rotate")
        for key in client.scan_iter(match="session:*:s:*"):
            for name, value in client.hgetall(key).items():
                if name.startswith((b"d:", b"i")) and value:  # an empty IP stays empty
                    assert value.startswith(b"\x1eek2:")
    finally:
        client.close()
    only_new = SessionHub(build_settings(redis_url, encryption={"KEYS": [K2]}))
    try:
        for i, cookie in enumerate(cookies):
            opened = only_new.open(cookie)
            assert opened is not None
            assert opened["n"] == i
            assert opened.record.user_agent == f"agent {i}"
            assert only_new.preferences.get(f"user{i}")["theme"] == "dark"
        assert only_new.manager.values.unlisted == 0
    finally:
        only_new.close()


def test_keys_rotate_without_keys_is_a_one_line_error(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without ENCRYPTION.KEYS there is nothing to rotate to: one line, exit 1."""
    assert main(["keys", "rotate", "--config", _config(tmp_path, redis_url, [])]) == 1
    err = capsys.readouterr().err
    assert err == "sessionhub: ENCRYPTION.KEYS is empty: there is no key to rotate to\n"


def test_a_stopped_rotation_resumes_from_its_saved_cursor(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rotation stopped after one batch leaves its cursor in Redis; the next run continues
    from it and finishes, leaving no value under the old key."""
    from sessionhub.rotation import KeyRotation

    hub = SessionHub(build_settings(redis_url, encryption={"KEYS": [K2, K1]}))
    old = SessionHub(build_settings(redis_url, encryption={"KEYS": [K1]}))
    for i in range(40):
        old.create(f"user{i}", data={"n": i})
    old.close()
    try:
        first = hub.run(KeyRotation(hub.manager.values, "session:", batch=5).step())
        assert not first.done
    finally:
        hub.close()
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.hget("session:rotate", "cursor") not in (None, b"0")
        assert main(["keys", "rotate", "--config", _config(tmp_path, redis_url, [K2, K1])]) == 0
        for key in client.scan_iter(match="session:*:s:*"):
            assert not any(v.startswith(b"\x1eek1:") for v in client.hgetall(key).values())
    finally:
        client.close()
