"""``sessionhub users add``: a user who can log in at once, with no restart and no YAML edited
by hand."""

from __future__ import annotations

from pathlib import Path

import yaml
from starlette.testclient import TestClient

from helpers import login as log_in
from helpers import service_settings
from sessionhub.service.app import create_app
from test_cli import one_line_error, run_cli


def test_added_user_logs_in_without_a_restart(tmp_path: Path, redis_url: str) -> None:
    """A fresh directory has no config file: users add writes one, and a service already
    running lets the new user log in."""
    config = tmp_path / "config.yaml"
    with TestClient(create_app(service_settings(redis_url), config)) as client:
        login = {"username": "carol", "password": "carol-password"}
        assert client.post("/api/auth/login", json=login).status_code == 401
        added = run_cli("users", "add", "carol", cwd=tmp_path, stdin="carol-password\n")
        assert added.returncode == 0, added.stderr
        assert "added user carol" in added.stdout
        assert client.post("/api/auth/login", json=login).status_code == 200


def test_added_user_can_be_sent_a_message_without_a_restart(tmp_path: Path, redis_url: str) -> None:
    """A user added while the service runs is a recipient at once, as for login: a message to
    them is refused as an unknown user before the add and accepted after it."""
    config = tmp_path / "config.yaml"
    with TestClient(create_app(service_settings(redis_url), config)) as client:
        log_in(client, "alice")
        message = {"to": "carol", "body": {"text": "welcome"}}
        before = client.post("/api/messages", json=message)
        assert before.status_code == 404, before.text
        assert before.json()["error"]["code"] == "user_not_found"
        added = run_cli("users", "add", "carol", cwd=tmp_path, stdin="carol-password\n")
        assert added.returncode == 0, added.stderr
        after = client.post("/api/messages", json=message)
        assert after.status_code == 201, after.text


def test_users_add_keeps_the_file_and_replaces_a_password(tmp_path: Path) -> None:
    """Added to a file without USERS, the rest of the file (comments too) stays as it was; adding
    the same name again changes its password instead of adding a second entry."""
    config = tmp_path / "mine.yaml"
    config.write_text("# my settings\nSESSION:\n  EXPIRES: 600\n")
    first = run_cli("users", "add", "dave", "--config", str(config), cwd=tmp_path, stdin="one\n")
    assert first.returncode == 0, first.stderr
    assert config.read_text().startswith("# my settings\nSESSION:\n  EXPIRES: 600\n")
    again = run_cli("users", "add", "dave", "--config", str(config), cwd=tmp_path, stdin="two\n")
    assert "updated user dave" in again.stdout
    users = yaml.safe_load(config.read_text())["USERS"]
    assert [u["USERNAME"] for u in users] == ["dave"]


def test_users_add_refuses_bad_input(tmp_path: Path) -> None:
    """An empty password, or a name the config would refuse, is one line and leaves no file."""
    empty = run_cli("users", "add", "erin", cwd=tmp_path, stdin="\n")
    assert "empty password" in one_line_error(empty, 2)
    spaced = run_cli("users", "add", "two words", cwd=tmp_path, stdin="pw\n")
    assert "USERNAME" in one_line_error(spaced, 2)
    assert list(tmp_path.iterdir()) == []
