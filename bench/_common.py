"""Shared helpers for the benchmarks: throw-away redis-servers, servers under test, wrk, tables.

Every benchmark starts its own redis-server(s) on free loopback ports (never 6379) through
``tests/redis_server.py``'s :class:`RedisServer`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(BENCH))

from redis_server import RedisServer, free_port  # noqa: E402

__all__ = ["RedisServer", "free_port"]

SECRET = "bench-secret-key-0123456789"
PASSWORD = "pw"
UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


def python() -> str:
    return sys.executable


@contextlib.contextmanager
def redis_server(*extra: str) -> Iterator[RedisServer]:
    server = RedisServer(extra_args=extra)
    server.start()
    try:
        yield server
    finally:
        server.close()


def password_hash() -> str:
    import argon2

    return argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)


def settings_dict(url: str, **session: Any) -> dict[str, Any]:
    return {
        "SECRET_KEY": SECRET,
        "REDIS": {"URL": url},
        "SESSION": {"TYPE": "redis", **{k.upper(): v for k, v in session.items()}},
        "USERS": [{"USERNAME": "alice", "PASSWORD_HASH": password_hash()}],
    }


def settings(url: str, **session: Any) -> Any:
    from sessionhub.config import Settings

    return Settings.model_validate(settings_dict(url, **session))


def write_config(
    directory: Path, url: str, redis_extra: dict[str, Any] | None = None, **session: Any
) -> Path:
    import yaml

    data = settings_dict(url, **session)
    data["REDIS"].update(redis_extra or {})
    data["SERVER"] = {"LOG_LEVEL": "warning"}
    path = directory / "sessionhub.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (also readable on a terminal)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}" if v == v else "n/a"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def save_result(name: str, data: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str))


def load_result(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def machine() -> dict[str, str]:
    import redis

    version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    match = re.search(r"v=(\S+)", version)
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    try:
        import hiredis  # noqa: F401

        parser = "hiredis"
    except ImportError:
        parser = "pure python"
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "python": platform.python_version(),
        "redis_server": match.group(1) if match else version,
        "redis_py": f"{redis.__version__} ({parser} parser)",
        "os": platform.platform(),
    }


# -- servers under test ------------------------------------------------------------------------


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback
                if resp.status < 500:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up within {timeout:.0f} s")
        time.sleep(0.1)


@contextlib.contextmanager
def process(
    cmd: Sequence[str], ready_url: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server in its own process group; stop exactly that group afterwards."""
    log = tempfile.NamedTemporaryFile(prefix="bench-server-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        list(cmd),
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=BENCH,
    )
    try:
        try:
            wait_http(ready_url)
        except RuntimeError:
            log.flush()
            tail = Path(log.name).read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{' '.join(cmd)} failed to start:\n{tail}") from None
        yield proc
    finally:
        stop_group(proc)
        log.close()
        os.unlink(log.name)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process started with ``start_new_session``, and its children: TERM, then KILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def sessionhub_cmd(config: Path, port: int, workers: int) -> list[str]:
    exe = Path(sys.executable).parent / "sessionhub"
    return [
        str(exe),
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def login(
    base: str, path: str = "/api/auth/login", cookie_name: str = "session", user: str = "alice"
) -> str:
    """Log ``user`` (alice by default) in and return the Cookie header value."""
    body = json.dumps({"username": user, "password": PASSWORD}).encode()
    req = urllib.request.Request(  # noqa: S310 - loopback
        base + path, data=body, headers={"Content-Type": "application/json", "User-Agent": UA}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
        for header in resp.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            if name.strip() == cookie_name:
                return f"{cookie_name}={rest.split(';', 1)[0]}"
    raise RuntimeError(f"login at {base}{path} set no {cookie_name} cookie")


# -- wrk -----------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def wrk(
    url: str,
    *,
    duration: float,
    connections: int,
    threads: int = 1,
    cookie: str | None = None,
    method: str = "GET",
    cookies_file: str | None = None,
) -> dict[str, float]:
    """Run wrk and return requests/s, requests, p50/p99 latency (ms) and error counts.

    ``cookies_file``: one Cookie header value per line, cycled through request after request.
    """
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)  # noqa: SIM115
    with script:
        script.write(f'wrk.method = "{method}"\n')
        if cookie:
            script.write(f'wrk.headers["Cookie"] = "{cookie}"\n')
        script.write(f'wrk.headers["User-Agent"] = "{UA}"\n')
        if cookies_file:
            script.write(
                f'cookies = {{}}\nfor line in io.lines("{cookies_file}") do '
                "cookies[#cookies + 1] = line end\n"
                "i = 0\n"
                "request = function()\n"
                "  i = i % #cookies + 1\n"
                '  wrk.headers["Cookie"] = cookies[i]\n'
                "  return wrk.format()\n"
                "end\n"
            )
        script.write(
            "errors = 0\n"
            "response = function(status, headers, body)\n"
            "  if status ~= 200 then errors = errors + 1 end\n"
            "end\n"
        )
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration:.0f}s",
        "--latency",
        "-s",
        script.name,
        url,
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    done = re.search(r"(\d+) requests in", out)
    return {
        "rps": rps,
        "requests": float(done.group(1)) if done else 0.0,
        "p50_ms": _ms(lat.get("50", "nan")),
        "p99_ms": _ms(lat.get("99", "nan")),
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": float(sum(int(x) for x in sock.groups())) if sock else 0.0,
    }


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0
