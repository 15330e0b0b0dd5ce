"""``sessionhub sessions list|revoke`` and ``sessionhub top``, run as real subprocesses, straight
on Redis from the config and against a running service with ``--url``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from liveserver import Server

from helpers import service_settings
from redis_server import free_port
from sessionhub.hub import SessionHub
from test_cli import SECRET, one_line_error, run_cli, write_config


@pytest.fixture
def live(redis_url: str) -> Iterator[Server]:
    """The service on a real port, on the test Redis."""
    server = Server(redis_url)
    yield server
    server.close()


def logged_in(redis_url: str, *agents: str) -> list[str]:
    """Log alice in once per user agent (with the CLI config's secret); return the cookies."""
    settings = service_settings(redis_url).model_copy(update={"secret_key": None})
    settings = settings.model_validate({**settings.model_dump(by_alias=True), "SECRET_KEY": SECRET})
    hub = SessionHub(settings)
    try:
        return [hub.login("alice", user_agent=agent, ip="10.0.0.7")[1] for agent in agents]
    finally:
        hub.close()


def handles(out: str) -> list[str]:
    """The ids of a ``sessions list`` table."""
    return [line.split()[0] for line in out.splitlines()[1:]]


def test_list_and_revoke_from_the_config(tmp_path: Path, redis_url: str) -> None:
    """From the config: list shows device and IP, revoke --id takes one, --all the rest."""
    config = str(write_config(tmp_path / "c.yaml", redis_url))
    logged_in(redis_url, "iPhone", "Firefox")
    listed = run_cli("sessions", "list", "--user", "alice", "--config", config, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "iPhone" in listed.stdout
    assert "10.0.0.7" in listed.stdout
    first = handles(listed.stdout)[0]
    one = run_cli(
        "sessions", "revoke", "--user", "alice", "--id", first, "--config", config, cwd=tmp_path
    )
    assert one.stdout.strip() == "revoked 1 session(s) of alice"
    again = run_cli(
        "sessions", "revoke", "--user", "alice", "--id", first, "--config", config, cwd=tmp_path
    )
    assert "no live session" in one_line_error(again, 2)
    rest = run_cli(
        "sessions", "revoke", "--user", "alice", "--all", "--config", config, cwd=tmp_path
    )
    assert rest.stdout.strip() == "revoked 1 session(s) of alice"
    empty = run_cli("sessions", "list", "--user", "alice", "--config", config, cwd=tmp_path)
    assert empty.stdout.strip() == "alice has no live sessions"


def test_ids_from_the_config_need_the_secret_key(tmp_path: Path, redis_url: str) -> None:
    """With no SECRET_KEY, list and revoke --id from the config refuse in one line naming it
    (each run would key ids its own way), while revoke --all still works."""
    config = str(write_config(tmp_path / "c.yaml", redis_url, SECRET_KEY=None))
    logged_in(redis_url, "iPhone")
    listed = run_cli("sessions", "list", "--user", "alice", "--config", config, cwd=tmp_path)
    assert "SECRET_KEY" in one_line_error(listed, 2)
    one = run_cli(
        "sessions", "revoke", "--user", "alice", "--id", "0" * 20, "--config", config,
        cwd=tmp_path,
    )  # fmt: skip
    assert "SECRET_KEY" in one_line_error(one, 2)
    every = run_cli(
        "sessions", "revoke", "--user", "alice", "--all", "--config", config, cwd=tmp_path
    )
    assert every.stdout.strip() == "revoked 1 session(s) of alice"


def test_list_and_revoke_through_the_service(tmp_path: Path, live: Server) -> None:
    """With --url the commands use the service's admin API, and a revoked device is refused."""
    config = str(write_config(tmp_path / "c.yaml", "redis://127.0.0.1:1/0"))
    cookie = live.login("alice", agent="iPhone")
    args = ("--user", "alice", "--url", live.base, "--config", config)
    listed = run_cli("sessions", "list", *args, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "iPhone" in listed.stdout
    wrong = run_cli("sessions", "revoke", "--id", "nope", *args, cwd=tmp_path)
    assert "no such session" in one_line_error(wrong, 2)
    revoked = run_cli("sessions", "revoke", "--all", *args, cwd=tmp_path)
    assert revoked.stdout.strip() == "revoked 1 session(s) of alice"
    me = httpx.get(f"{live.base}/api/auth/me", headers={"cookie": f"session={cookie}"})
    assert me.status_code == 401


def test_url_without_an_admin_key_is_a_usage_error(tmp_path: Path) -> None:
    """--url with no admin key configured says where to put one, exit 2."""
    result = run_cli("sessions", "list", "--user", "a", "--url", "http://127.0.0.1:1", cwd=tmp_path)
    assert "ADMIN.API_KEYS" in one_line_error(result, 2)


def test_revoke_needs_all_or_id(tmp_path: Path) -> None:
    """revoke without --all or --id is refused by the parser (exit 2)."""
    result = run_cli("sessions", "revoke", "--user", "alice", cwd=tmp_path)
    assert result.returncode == 2
    assert "--all" in result.stderr


def test_top_shows_the_figures_and_quits_on_q(tmp_path: Path, live: Server) -> None:
    """top against the service draws the dashboard's figures and stops at a 'q'."""
    config = str(write_config(tmp_path / "c.yaml", "redis://127.0.0.1:1/0"))
    live.login("alice")
    result = run_cli("top", "--url", live.base, "--config", config, cwd=tmp_path, stdin="q")
    assert result.returncode == 0, result.stderr
    assert "Redis         healthy" in result.stdout
    assert "Sessions      1 (Redis 1, memory only 0)" in result.stdout
    assert "Online users  1" in result.stdout
    assert "Memory store" in result.stdout
    assert "1 logins" in result.stdout


def test_top_from_the_config(tmp_path: Path, redis_url: str) -> None:
    """top from the config reads Redis itself, including the service's activity counters."""
    config = str(write_config(tmp_path / "c.yaml", redis_url))
    logged_in(redis_url, "iPhone")
    result = run_cli("top", "--config", config, cwd=tmp_path, stdin="q")
    assert result.returncode == 0, result.stderr
    assert "Sessions      1 (Redis 1, memory only 0)" in result.stdout
    assert "Memory store" not in result.stdout  # the command's own store would show nothing


def test_top_against_nothing_fails_in_one_line(tmp_path: Path) -> None:
    """top --url where no service answers fails at once, exit 1."""
    config = str(write_config(tmp_path / "c.yaml", "redis://127.0.0.1:1/0"))
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli("top", "--url", url, "--config", config, cwd=tmp_path, stdin="q")
    assert "cannot reach" in one_line_error(result, 1)
