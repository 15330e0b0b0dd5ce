"""The examples start with one command on a free port and answer the seed's routes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from redis_server import RedisServer, free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

COMMANDS = {
    "flask": ([sys.executable, "flask_app.py"], EXAMPLES),
    "fastapi": ([sys.executable, "fastapi_app.py"], EXAMPLES),
    "django": (
        [sys.executable, "manage.py", "runserver", "--noreload", "127.0.0.1:{port}"],
        EXAMPLES / "django_app",
    ),
}


@pytest.fixture(params=sorted(COMMANDS))
def example(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> Iterator[str]:
    """An example server running as a subprocess; yields its base URL."""
    port = free_port()
    argv, cwd = COMMANDS[request.param]
    env = {
        **os.environ,
        "PORT": str(port),
        "REDIS_URL": redis_url,
        "SECRET_KEY": "example-secret-key-0123456789",
        "SESSIONHUB_CONFIG": str(tmp_path / "config.yaml"),
    }
    (tmp_path / "config.yaml").write_text("SESSION:\n  EXPIRES: 600\n")
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [a.format(port=port) for a in argv], cwd=cwd, env=env, stdout=out, stderr=out
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(base + "/api/health/redis", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{request.param} example did not start:\n{log.read_text()}")
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "alice" in log.read_text(), "the demo user table is printed at start"


def test_example_serves_the_seed_routes(example: str) -> None:
    """Login, visits, logout, stats and health behave as in the seed."""
    with httpx.Client(base_url=example, timeout=5) as client:
        bad = client.post("/login", json={"username": "alice", "password": "nope"})
        assert bad.status_code == 401
        assert client.post("/login", json={"username": "alice", "password": "alice-pw"}).json() == {
            "success": True,
            "data": {"user_id": "alice"},
        }
        assert client.get("/visits").json() == {"visits": 1}
        assert client.get("/visits").json() == {"visits": 2}
        stats = client.get("/api/session/stats").json()
        assert stats == {"success": True, "data": {"total_sessions": 1, "redis_available": True}}
        health = client.get("/api/health/redis")
        assert health.status_code == 200
        assert health.json()["data"]["status"] == "healthy"
        assert set(health.json()["data"]) == {"status", "message", "session_count"}
        assert client.post("/logout").json()["data"] == {"logged_out": True}
        assert client.get("/api/session/stats").json()["data"]["total_sessions"] == 0


def test_example_health_is_503_when_redis_is_down(
    fresh_redis_server: RedisServer, tmp_path: Path
) -> None:
    """With Redis gone the Flask example reports degraded with HTTP 503 and keeps counting."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "REDIS_URL": fresh_redis_server.url,
        "SECRET_KEY": "example-secret-key-0123456789",
        "SESSIONHUB_CONFIG": str(tmp_path / "config.yaml"),
    }
    (tmp_path / "config.yaml").write_text("REDIS:\n  PROBE_INTERVAL: 0.5\n")
    proc = subprocess.Popen(
        [sys.executable, "flask_app.py"],
        cwd=EXAMPLES,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    assert client.get("/visits").json() == {"visits": 1}
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            fresh_redis_server.kill()
            assert client.get("/visits").json() == {"visits": 2}
            health = client.get("/api/health/redis")
            assert health.status_code == 503
            assert health.json()["data"]["status"] == "degraded"
    finally:
        proc.terminate()
        proc.wait(10)
