"""The README's first session on a machine with no Redis, checked step by step.

    unshare -rn sh -c 'ip link set lo up && exec python3 scripts/fresh_check.py CHECKOUT'

Run inside a network namespace of its own (``scripts/fresh-check.sh`` and the test suite do),
where nothing answers on Redis's default address 127.0.0.1:6379 and the real default can be
used without touching anybody's Redis. In ``CHECKOUT`` (a clean clone whose ``.venv`` is
installed: there is no network in here) it runs ``scripts/serve.sh`` as the README's first
command does, with nothing configured, then checks that:

1. the service started a private redis-server on 127.0.0.1:6379 and named it in its log;
2. ``GET /api/health/redis`` answers 200 ``healthy``, not degraded;
3. a user added with ``sessionhub users add`` logs in and ``/api/auth/me`` knows her;
4. stopping the service (Ctrl-C) stops that redis-server too.

Prints one JSON object per step (``{"step": ..., "ok": ..., ...}``) and exits 1 at the first
failure, with the service's log. Standard library only: it runs before anything is imported
from the checkout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, NoReturn

REDIS = ("127.0.0.1", 6379)
BASE = "http://127.0.0.1:5000"
ADMIN_KEY = "choose-a-long-admin-key"
USER, PASSWORD = "alice", "alice-password"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
PRIVATE_REDIS = re.compile(r"started a private redis-server \(pid (\d+)\) at (redis://[^\s,]+)")
# What a service started by hand would not have: no Redis named, no leftover settings.
KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SESSIONHUB_REDIS_SERVER")


class Failed(Exception):
    """A step did not hold."""


def report(step: str, ok: bool, **details: Any) -> None:
    print(json.dumps({"step": step, "ok": ok, **details}), flush=True)


def answers(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=0.5):
            return True
    except OSError:
        return False


def request(path: str, body: dict[str, str] | None = None, cookie: str | None = None) -> Any:
    """(status, JSON body, Set-Cookie header) of one request to the service."""
    headers = {"content-type": "application/json"}
    if cookie:
        headers["cookie"] = cookie
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(req, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read()), response.headers["set-cookie"]
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), None


def until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise Failed(f"{what} within {timeout:.0f} s")
        time.sleep(0.2)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def check(checkout: Path, log_path: Path) -> None:
    if answers(REDIS):
        raise Failed(
            "something answers on 127.0.0.1:6379: run this in a network namespace of its own "
            "(unshare -rn), never beside a Redis that is in use"
        )
    report("no redis on the default address", True)
    env = {k: v for k, v in os.environ.items() if k in KEPT_ENV}
    env["SESSIONHUB_ADMIN_API_KEYS"] = ADMIN_KEY
    with open(log_path, "wb") as log:
        service = subprocess.Popen(
            ["./scripts/serve.sh"], cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        steps(checkout, log_path, service, env)
    finally:
        # After a failed step: stop everything started here, the private redis-server too (it
        # runs in a session of its own, so a killed service would leave it behind).
        if service.poll() is None and interrupted(service) is None:
            service.kill()
            service.wait()
        pid = private_redis_pid(log_path.read_text())
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGKILL)


def interrupted(service: subprocess.Popen[bytes]) -> int | None:
    """Ctrl-C for ``service``: its exit code, or ``None`` if it is still running after
    ``STOP_TIMEOUT``."""
    service.send_signal(signal.SIGINT)
    try:
        return service.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None


def private_redis_pid(log: str) -> int | None:
    found = PRIVATE_REDIS.search(log)
    return int(found.group(1)) if found else None


def steps(checkout: Path, log_path: Path, service: subprocess.Popen[bytes], env: Any) -> None:
    def started() -> bool:
        if service.poll() is not None:
            raise Failed(f"scripts/serve.sh exited with {service.returncode}")
        status: int = request("/healthz")[0]
        return status == 200

    until(started, START_TIMEOUT, "the service did not answer /healthz")
    log = log_path.read_text()
    found = PRIVATE_REDIS.search(log)
    if found is None:
        raise Failed("the log names no private redis-server")
    pid, url = int(found.group(1)), found.group(2)
    if url != "redis://127.0.0.1:6379/0" or not answers(REDIS):
        raise Failed(f"the private redis-server is at {url}, not the default address")
    if "installing sessionhub" in log:
        raise Failed("scripts/serve.sh tried to install with no network")
    report("private redis-server on the default address", True, pid=pid, url=url)

    status, body, _ = request("/api/health/redis")
    health = body["data"]["status"]
    if status != 200 or health != "healthy":
        raise Failed(f"/api/health/redis answered {status} {health}")
    report("health", True, status=status, health=health)

    subprocess.run(
        [".venv/bin/sessionhub", "users", "add", USER],
        cwd=checkout,
        env=env,
        input=PASSWORD.encode(),
        check=True,
        capture_output=True,
    )
    status, body, cookie = request("/api/auth/login", {"username": USER, "password": PASSWORD})
    if status != 200 or not cookie:
        raise Failed(f"login answered {status}: {body}")
    status, body, _ = request("/api/auth/me", cookie=cookie.split(";")[0])
    if status != 200 or body["data"]["user_id"] != USER:
        raise Failed(f"/api/auth/me answered {status}: {body}")
    report("login", True, user=USER)

    code = interrupted(service)
    if code is None:
        raise Failed("the service did not stop on Ctrl-C")
    until(lambda: not alive(pid), STOP_TIMEOUT, f"the private redis-server (pid {pid}) still runs")
    if answers(REDIS):
        raise Failed("something still answers on 127.0.0.1:6379 after the service stopped")
    report("stopped with the service", True, exit_code=code, redis_pid=pid)


def fail(step: str, log_path: Path) -> NoReturn:
    log = log_path.read_text() if log_path.exists() else ""
    report("failed", False, error=step, log=log[-4000:])
    sys.exit(1)


def main() -> None:
    checkout = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    log_path = checkout / ".sessionhub" / "fresh-check.log"  # ignored by git
    log_path.parent.mkdir(exist_ok=True)
    try:
        check(checkout, log_path)
    except (Failed, subprocess.CalledProcessError, KeyError, ValueError) as exc:
        fail(f"{type(exc).__name__}: {exc}", log_path)


if __name__ == "__main__":
    main()
