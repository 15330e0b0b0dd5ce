"""The ``sessionhub`` command, run as a real subprocess."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import argon2
import pytest

from helpers import ADMIN_KEY, PASSWORD_HASH, serve_command
from redis_server import RedisServer, free_port

SECRET = "cli-test-secret-0123456789"


def run_cli(
    *args: str, cwd: Path, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``sessionhub ARGS`` with a clean environment (no REDIS_* or SESSIONHUB_* leaking in)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SESSIONHUB_"))}
    base.pop("SECRET_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "sessionhub.cli", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
    )


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The single stderr line of a command that failed as ``code``, with no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sessionhub: ")
    return lines[0]


def write_config(path: Path, redis_url: str, **extra: object) -> Path:
    """A config file for the CLI tests."""
    import yaml

    data = {
        "SECRET_KEY": SECRET,
        "REDIS": {"URL": redis_url, "SOCKET_TIMEOUT": 1.0, "CONNECT_TIMEOUT": 1.0},
        "ADMIN": {"API_KEYS": [ADMIN_KEY]},
        "USERS": [{"USERNAME": "alice", "PASSWORD_HASH": PASSWORD_HASH}],
        **extra,
    }
    path.write_text(yaml.safe_dump(data))
    return path


def test_config_check_masks_secrets(tmp_path: Path, redis_url: str) -> None:
    """config check prints the effective config with every secret masked."""
    config = write_config(tmp_path / "config.yaml", redis_url)
    result = run_cli("config", "check", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout
    assert SECRET not in result.stdout
    assert ADMIN_KEY not in result.stdout
    assert PASSWORD_HASH not in result.stdout
    assert "EXPIRES: 7200" in result.stdout


def test_bad_config_is_one_line_without_traceback(tmp_path: Path) -> None:
    """A bad value stops the command with one line naming key, value and what is allowed."""
    (tmp_path / "config.yaml").write_text("SESSION:\n  EXPIRES: soon\n")
    result = run_cli("config", "check", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "SESSION.EXPIRES" in lines[0]
    assert "soon" in lines[0]
    assert "Traceback" not in result.stderr


def test_env_override_is_validated_too(tmp_path: Path) -> None:
    """A bad environment override is reported naming the variable."""
    result = run_cli("config", "check", cwd=tmp_path, env={"REDIS_PORT": "http"})
    assert result.returncode == 2
    assert "REDIS_PORT" in result.stderr


def test_prod_requires_secret_key(tmp_path: Path) -> None:
    """With SESSIONHUB_ENV=prod and no SECRET_KEY the command refuses to start."""
    result = run_cli("config", "check", cwd=tmp_path, env={"SESSIONHUB_ENV": "prod"})
    assert result.returncode == 2
    assert "SECRET_KEY is required" in result.stderr


def test_hash_password_reads_stdin(tmp_path: Path) -> None:
    """hash-password prints an argon2id hash that verifies the password it was given."""
    result = run_cli("hash-password", cwd=tmp_path, stdin="s3cret!\n")
    assert result.returncode == 0, result.stderr
    hashed = result.stdout.strip()
    assert hashed.startswith("$argon2id$")
    assert argon2.PasswordHasher().verify(hashed, "s3cret!")


def test_health_and_stats_against_redis(tmp_path: Path, redis_url: str) -> None:
    """health exits 0 with healthy JSON on a live Redis; stats prints the counts."""
    config = write_config(tmp_path / "c.yaml", redis_url)
    health = run_cli("health", "--config", str(config), cwd=tmp_path)
    assert health.returncode == 0, health.stderr
    assert json.loads(health.stdout)["status"] == "healthy"
    stats = run_cli("stats", "--config", str(config), cwd=tmp_path)
    assert json.loads(stats.stdout)["total_sessions"] == 0


def test_health_exits_1_when_redis_is_down(tmp_path: Path) -> None:
    """health exits 1 and says degraded when Redis cannot be reached."""
    config = write_config(tmp_path / "c.yaml", f"redis://127.0.0.1:{free_port()}/0")
    result = run_cli("health", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert json.loads(result.stdout)["status"] == "degraded"
    line = one_line_error(result, 1)
    assert "redis://127.0.0.1:" in line
    assert "Connection refused" in line


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback test URL
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_starts_degraded_and_recovers(tmp_path: Path, workers: int) -> None:
    """serve starts with no Redis, logs that it is degraded, then finds Redis when it appears."""
    server = RedisServer()
    server.start()
    server.stop()  # reserve a port with nothing on it yet
    port = free_port()
    config = write_config(
        tmp_path / "c.yaml",
        server.url,
        REDIS={
            "URL": server.url,
            "PROBE_INTERVAL": 0.5,
            "SOCKET_TIMEOUT": 1.0,
            "CONNECT_TIMEOUT": 1.0,
        },
    )
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        serve_command(config, port, workers),
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _ = _get(base + "/healthz")
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        assert _get(base + "/api/health/redis")[0] == 503
        text = (tmp_path / "serve.log").read_text()
        assert "Redis unavailable, sessions stored in memory (degraded mode)" in text
        server.start()
        deadline = time.monotonic() + 10
        while _get(base + "/api/health/redis")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()
        server.close()


@pytest.mark.parametrize("command", ["health", "stats"])
def test_url_of_a_service_that_is_not_running(tmp_path: Path, command: str) -> None:
    """--url on a refused port prints one line naming the URL and the refusal, and exits 1."""
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli(command, "--url", url, cwd=tmp_path)
    line = one_line_error(result, 1)
    assert url in line
    assert "Connection refused" in line
    assert result.stdout == ""


def test_url_of_a_service_that_never_answers(tmp_path: Path) -> None:
    """--url on a port that accepts connections but never answers (a hung service) gives up
    after the client's timeout with one line naming the URL, and exits 1."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
        url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        result = run_cli("health", "--url", url, cwd=tmp_path)
    line = one_line_error(result, 1)
    assert url in line
    assert "timed out" in line
    assert result.stdout == ""


@pytest.fixture
def not_sessionhub_url() -> Iterator[str]:
    """A loopback HTTP server that answers every GET with an HTML 404, as many servers do."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("command", ["health", "stats"])
def test_url_of_something_else(tmp_path: Path, not_sessionhub_url: str, command: str) -> None:
    """--url at a server that is not SessionHub says what it answered, in one line, exit 1."""
    result = run_cli(command, "--url", not_sessionhub_url, cwd=tmp_path)
    line = one_line_error(result, 1)
    assert not_sessionhub_url in line
    assert "HTTP 404" in line


def test_url_of_a_redis_server(tmp_path: Path, redis_url: str) -> None:
    """--url at a port that does not speak HTTP at all is one line naming the URL, exit 1."""
    url = "http://" + redis_url.split("://", 1)[1].split("/", 1)[0]
    result = run_cli("health", "--url", url, cwd=tmp_path)
    assert url in one_line_error(result, 1)


def test_url_must_be_http(tmp_path: Path) -> None:
    """A --url without http:// or https:// is a usage error: one line, exit 2."""
    result = run_cli("stats", "--url", "localhost:5000", cwd=tmp_path)
    assert "'localhost:5000'" in one_line_error(result, 2)


def test_local_stats_when_redis_is_down(tmp_path: Path) -> None:
    """stats without --url and no Redis prints one line naming the Redis URL, exits 1."""
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    config = write_config(tmp_path / "c.yaml", redis_url)
    result = run_cli("stats", "--config", str(config), cwd=tmp_path)
    line = one_line_error(result, 1)
    assert redis_url in line
    assert "Connection refused" in line
    assert result.stdout == ""


@pytest.mark.parametrize("command", ["health", "stats", "serve"])
def test_unparseable_redis_url(tmp_path: Path, command: str) -> None:
    """A Redis URL redis-py cannot parse is a config error naming REDIS.URL, not a traceback."""
    config = write_config(tmp_path / "c.yaml", "redis://127.0.0.1:no-port/0")
    result = run_cli(command, "--config", str(config), cwd=tmp_path)
    line = one_line_error(result, 2)
    assert "REDIS.URL" in line
    assert "no-port" in line


@pytest.mark.parametrize(
    ("name", "command"), [("missing.yaml", "health"), ("a-directory", "stats")]
)
def test_unreadable_config_file(tmp_path: Path, name: str, command: str) -> None:
    """--config naming a missing file or a directory is one line naming the path, exit 2."""
    (tmp_path / "a-directory").mkdir()
    result = run_cli(command, "--config", str(tmp_path / name), cwd=tmp_path)
    assert name in one_line_error(result, 2)


@pytest.mark.parametrize(
    ("stdin", "problem"), [(b"", "empty password"), (b"\xff\xfe\n", "not UTF-8")]
)
def test_hash_password_bad_input(tmp_path: Path, stdin: bytes, problem: str) -> None:
    """hash-password with nothing or non-UTF-8 bytes on stdin says so in one line, exit 2."""
    result = subprocess.run(
        [sys.executable, "-m", "sessionhub.cli", "hash-password"],
        cwd=tmp_path,
        input=stdin,
        capture_output=True,
        timeout=60,
    )
    text = subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )
    assert problem in one_line_error(text, 2)
    assert text.stdout == ""


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--port", "99999"], "--port: 99999 is not from 1 to 65535"),
        (["--port", "http"], "--port: 'http' is not a whole number"),
        (["--workers", "0"], "--workers: 0 is not from 1 to 64"),
    ],
)
def test_serve_bad_arguments(tmp_path: Path, args: list[str], problem: str) -> None:
    """serve refuses an impossible port or worker count before starting, exit 2."""
    result = run_cli("serve", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert problem in result.stderr


def test_closed_stdout_is_not_a_traceback(tmp_path: Path) -> None:
    """A reader that goes away (``| head``) ends the command quietly, not with a traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sessionhub.cli", "config", "check"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()  # before the command has written anything
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 1
    assert stderr == ""
