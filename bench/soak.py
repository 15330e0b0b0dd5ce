"""Soak: many clients use the service while a chaos loop breaks its Redis; nothing may 5xx or
lose an acknowledged write. Run it with ``scripts/soak.sh [--duration 120] [--clients 32]``.

It starts its own redis-server (AOF, ``appendfsync always``, so an acknowledged write that goes
missing is the service's doing, not Redis's fsync window) on a free loopback port in a temp dir,
and the service (uvicorn, one worker, ``bench/soak_app.py``) configured through the environment.
Clients log in, read and write session data, send and page messages, heartbeat and patch
settings. The chaos loop, at random: SIGKILL + restart, SIGSTOP/SIGCONT, ``REPLICAOF`` a master
that does not exist (writes answer READONLY), ``maxmemory`` 1 byte with ``noeviction`` (writes
answer OOM). After the deadline chaos stops, the service must come back to Redis, and every
write it acknowledged is read back through the API. Exit status 1 on any 5xx or lost write.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import http.cookiejar
import itertools
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from _common import BENCH, RedisServer, free_port, password_hash, stop_group, table, wait_http

SECRET = "soak-secret-key-0123456789abcdef"
PASSWORD = "pw"  # password_hash() hashes this one
CHAOS_KINDS = ("kill", "freeze", "readonly", "oom")
REQUEST_TIMEOUT = 15.0
RECOVERY_TIMEOUT = 60.0
SAMPLES = 8


@dataclass
class Tally:
    """Everything the run counts; one instance shared by every task (single event loop)."""

    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    by_route: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    samples_5xx: list[str] = field(default_factory=list)
    chaos: collections.Counter[str] = field(default_factory=collections.Counter)
    chaos_log: list[str] = field(default_factory=list)
    # cookie -> key -> highest acknowledged value
    session_acks: dict[str, dict[str, int]] = field(default_factory=dict)
    session_acked: int = 0
    # recipient -> tokens of acknowledged messages
    message_acks: dict[str, set[str]] = field(default_factory=lambda: collections.defaultdict(set))
    # user -> custom key -> highest acknowledged value
    settings_acks: dict[str, dict[str, int]] = field(default_factory=dict)
    settings_acked: int = 0
    started: float = field(default_factory=time.monotonic)
    verify_errors: list[str] = field(default_factory=list)

    def note(
        self, method: str, route: str, response: httpx.Response | None, error: str = ""
    ) -> None:
        status = str(response.status_code) if response is not None else f"error:{error}"
        self.statuses[status] += 1
        self.by_route[(f"{method} {route}", status)] += 1
        failed = response is not None and response.status_code >= 500
        if failed and len(self.samples_5xx) < SAMPLES:
            assert response is not None
            at = time.monotonic() - self.started
            self.samples_5xx.append(
                f"t={at:.1f}s {method} {route} -> {status} {response.text[:300]}"
            )


class Client:
    """One simulated user device: its own session cookie, a mix of requests until the deadline."""

    def __init__(self, n: int, user: str, users: list[str], http: httpx.AsyncClient, tally: Tally):
        self.n, self.user, self.users, self.http, self.tally = n, user, users, http, tally
        self.cookie = ""
        self.counter = itertools.count(1)
        self.rng = random.Random(n)

    async def call(self, method: str, path: str, body: Any = None) -> httpx.Response | None:
        route = path.split("?", 1)[0]
        headers = {"cookie": f"session={self.cookie}"} if self.cookie else {}
        try:
            response = await self.http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            self.tally.note(method, route, None, type(exc).__name__)
            return None
        self.tally.note(method, route, response)
        if response.status_code == 401 and route != "/api/auth/login":
            await self.login()
        return response

    async def login(self) -> None:
        self.cookie = ""
        body = {"username": self.user, "password": PASSWORD}
        response = await self.call("POST", "/api/auth/login", body)
        if response is not None and response.status_code == 200:
            self.cookie = response.cookies.get("session", "")

    async def run(self, deadline: float) -> None:
        await self.login()
        ops = [
            (3, self.me),
            (3, self.write_data),
            (2, self.read_data),
            (2, self.send),
            (2, self.read_messages),
            (2, self.heartbeat),
            (2, self.patch_settings),
            (1, self.read_settings),
        ]
        weights = [w for w, _ in ops]
        while time.monotonic() < deadline:
            if not self.cookie:
                await asyncio.sleep(0.2)
                await self.login()
                continue
            _, op = self.rng.choices(ops, weights)[0]
            await op()
            await asyncio.sleep(self.rng.uniform(0, 0.05))

    async def me(self) -> None:
        await self.call("GET", "/api/auth/me")

    async def write_data(self) -> None:
        cookie, key, value = self.cookie, f"c{self.n}", next(self.counter)
        response = await self.call("PUT", "/soak/session/data", {key: value, "blob": "x" * 200})
        if response is not None and response.status_code == 200:
            acks = self.tally.session_acks.setdefault(cookie, {})
            acks[key] = max(acks.get(key, 0), value)
            self.tally.session_acked += 1

    async def read_data(self) -> None:
        await self.call("GET", "/soak/session/data")

    async def send(self) -> None:
        to = self.rng.choice(self.users)
        token = f"{self.n}-{next(self.counter)}"
        response = await self.call("POST", "/api/messages", {"to": to, "body": {"t": token}})
        if response is not None and response.status_code == 201:
            self.tally.message_acks[to].add(token)

    async def read_messages(self) -> None:
        await self.call("GET", "/api/me/messages?limit=20&unread=true")

    async def heartbeat(self) -> None:
        await self.call("POST", "/api/presence/heartbeat")

    async def patch_settings(self) -> None:
        key, value = f"c{self.n}", next(self.counter)
        theme = self.rng.choice(["light", "dark", "system"])
        body = {"theme": theme, "custom": {key: value}}
        response = await self.call("PATCH", "/api/me/settings", body)
        if response is not None and response.status_code == 200:
            acks = self.tally.settings_acks.setdefault(self.user, {})
            acks[key] = max(acks.get(key, 0), value)
            self.tally.settings_acked += 1

    async def read_settings(self) -> None:
        await self.call("GET", "/api/me/settings")


class Chaos:
    """Breaks the redis-server in one way at a time, then repairs it, until the deadline."""

    def __init__(self, server: RedisServer, tally: Tally, seed: int) -> None:
        self.server, self.tally, self.rng = server, tally, random.Random(seed)
        self.nowhere = free_port()  # a master that never answers

    def _admin(self) -> redis.Redis:
        return self.server.client(socket_timeout=5.0, socket_connect_timeout=2.0)

    async def run(self, deadline: float, max_events: int) -> None:
        for _ in range(max_events):
            await asyncio.sleep(self.rng.uniform(2.0, 6.0))
            if time.monotonic() >= deadline:
                return
            kind = self.rng.choice(CHAOS_KINDS)
            hold = self.rng.uniform(1.0, 5.0)
            at = time.monotonic() - self.tally.started
            self.tally.chaos[kind] += 1
            self.tally.chaos_log.append(f"t={at:.1f}s {kind} for {hold:.1f}s")
            await getattr(self, kind)(hold)

    async def kill(self, hold: float) -> None:
        await asyncio.to_thread(self.server.kill)
        await asyncio.sleep(hold)
        await asyncio.to_thread(self.server.start)  # same port and dir: the AOF brings data back

    async def freeze(self, hold: float) -> None:
        pid = self.server.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(hold)
        finally:
            os.kill(pid, signal.SIGCONT)

    async def readonly(self, hold: float) -> None:
        client = self._admin()
        try:
            client.execute_command("REPLICAOF", "127.0.0.1", str(self.nowhere))
            await asyncio.sleep(hold)
        finally:
            client.execute_command("REPLICAOF", "NO", "ONE")
            client.close()

    async def oom(self, hold: float) -> None:
        client = self._admin()
        try:
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", "1")
            await asyncio.sleep(hold)
        finally:
            client.config_set("maxmemory", "0")
            client.close()

    def repair(self) -> None:
        """Whatever state an interrupted event left: running, awake, a master, no memory cap."""
        if not self.server.is_running:
            self.server.start()
        pid = self.server.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        client = self._admin()
        try:
            client.execute_command("REPLICAOF", "NO", "ONE")
            client.config_set("maxmemory", "0")
        finally:
            client.close()


def rss_kib(pid: int) -> int:
    match = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) if match else -1


async def verify(
    http: httpx.AsyncClient, tally: Tally, users: list[str]
) -> dict[str, tuple[int, int]]:
    """Read every acknowledged write back through the API: kind -> (checked, found)."""
    out: dict[str, tuple[int, int]] = {}
    checked = found = 0
    for cookie, acks in tally.session_acks.items():
        response = await http.get("/soak/session/data", headers={"cookie": f"session={cookie}"})
        data = response.json().get("data", {}) if response.status_code == 200 else {}
        for key, value in acks.items():
            checked += 1
            found += int(isinstance(data.get(key), int) and data[key] >= value)
    out["session data (last value per key)"] = (checked, found)
    cookies: dict[str, str] = {}
    for user in users:
        response = await http.post("/api/auth/login", json={"username": user, "password": PASSWORD})
        if response.status_code != 200:
            tally.verify_errors.append(f"login {user}: {response.status_code} {response.text}")
        cookies[user] = response.cookies.get("session", "")
    checked = found = 0
    for user, tokens in tally.message_acks.items():
        seen: set[str] = set()
        cursor = ""
        for _ in range(10_000):  # pages of 500: far more than a run can send
            response = await http.get(
                f"/api/me/messages?limit=500&cursor={cursor}",
                headers={"cookie": f"session={cookies[user]}"},
            )
            if response.status_code != 200:
                tally.verify_errors.append(
                    f"{user}'s inbox: {response.status_code} {response.text}"
                )
                break
            page = response.json()["data"]
            seen |= {str((m.get("body") or {}).get("t")) for m in page["messages"]}
            cursor = page["next_cursor"] or ""
            if not cursor:
                break
        checked += len(tokens)
        found += len(tokens & seen)
    out["messages"] = (checked, found)
    checked = found = 0
    for user, acks in tally.settings_acks.items():
        response = await http.get(
            "/api/me/settings", headers={"cookie": f"session={cookies[user]}"}
        )
        if response.status_code != 200:
            tally.verify_errors.append(f"{user}'s settings: {response.status_code} {response.text}")
        custom = response.json().get("data", {}).get("custom", {})
        for key, value in acks.items():
            checked += 1
            found += int(isinstance(custom.get(key), int) and custom[key] >= value)
    out["settings (last value per key)"] = (checked, found)
    return out


async def wait_on_redis(http: httpx.AsyncClient) -> float:
    """Seconds until the service answers healthy from Redis again (it probes by itself)."""
    start = time.monotonic()
    while time.monotonic() - start < RECOVERY_TIMEOUT:
        with contextlib.suppress(httpx.HTTPError):
            if (await http.get("/api/health/redis")).status_code == 200:
                return time.monotonic() - start
        await asyncio.sleep(0.25)
    raise RuntimeError(f"the service did not return to Redis within {RECOVERY_TIMEOUT:.0f} s")


def write_config(directory: Path, users: list[str]) -> Path:
    import yaml

    hashed = password_hash()
    data = {
        "SECRET_KEY": SECRET,
        "SESSION": {"TYPE": "redis"},
        "REDIS": {"SOCKET_TIMEOUT": 1.0, "CONNECT_TIMEOUT": 1.0, "PROBE_INTERVAL": 0.5},
        "USERS": [{"USERNAME": u, "PASSWORD_HASH": hashed} for u in users],
        # Limits that would refuse the load itself are lifted: the soak is about faults.
        "MESSAGES": {"SEND_RATE": 1_000_000, "MAX_PER_USER": 1_000_000},
        "PREFERENCES": {"MAX_CUSTOM_KEYS": 1000, "MAX_CUSTOM_BYTES": 65536},
        "SERVER": {"LOG_LEVEL": "warning"},
    }
    path = directory / "soak.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start_service(config: Path, redis_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SESSIONHUB_CONFIG": str(config), "SESSIONHUB_REDIS__URL": redis_url}
    cmd = [
        sys.executable, "-m", "uvicorn", "soak_app:create", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=BENCH, start_new_session=True
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
    except RuntimeError:
        stop_group(proc)
        raise RuntimeError(f"the service did not start:\n{log.read_text()[-3000:]}") from None
    return proc


def log_errors(log: Path) -> list[str]:
    """The distinct error lines of the service log (the last line of each traceback too)."""
    lines = log.read_text(errors="replace").splitlines()
    picked = [
        ln.strip()
        for ln in lines
        if re.match(r"^[\w.]*(Error|Exception)\b.*:", ln.strip()) or "ERROR:" in ln
    ]
    shapes = (re.sub(r"\d+", "N", re.sub(r"script: \w+", "script: SHA", ln)) for ln in picked)
    counted = collections.Counter(shape[:200] for shape in shapes)
    return [f"{n} x {text}" for text, n in counted.most_common(12)]


async def soak(args: argparse.Namespace, workdir: Path) -> int:
    users = [f"user{i}" for i in range(args.users)]
    tally = Tally()
    server = RedisServer(extra_args=("--appendonly", "yes", "--appendfsync", "always"))
    log = workdir / "service.log"
    proc: subprocess.Popen[bytes] | None = None
    chaos = Chaos(server, tally, args.seed)
    try:
        server.start()
        port = free_port()
        proc = start_service(write_config(workdir, users), server.url, port, log)
        limits = httpx.Limits(
            max_connections=args.clients + 8, max_keepalive_connections=args.clients + 8
        )
        # Each device sends its own cookie: a shared jar would send one device's cookie on another's
        # login, and a login destroys the session it arrives with (fixation protection).
        no_jar = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            timeout=REQUEST_TIMEOUT,
            limits=limits,
            cookies=no_jar,
        ) as web:
            clients = [
                Client(n, users[n % len(users)], users, web, tally) for n in range(args.clients)
            ]
            rss_start = rss_kib(proc.pid)
            tally.started = time.monotonic()
            deadline = tally.started + args.duration
            print(f"soak: {args.clients} clients, {args.duration:.0f} s, redis {server.url}, "
                  f"service :{port} (pid {proc.pid}), log {log}", flush=True)  # fmt: skip
            await asyncio.wait_for(
                asyncio.gather(
                    chaos.run(deadline, max_events=int(args.duration)),
                    *(c.run(deadline) for c in clients),
                ),
                timeout=args.duration + 2 * REQUEST_TIMEOUT + 30,
            )
            await asyncio.to_thread(chaos.repair)
            recovery = await wait_on_redis(web)
            results = await verify(web, tally, users)
            rss_end = rss_kib(proc.pid)
    finally:
        if proc is not None:
            stop_group(proc)
        with contextlib.suppress(Exception):
            chaos.repair()
        server.close()
    return report(tally, results, rss_start, rss_end, recovery, log, args)


def report(
    tally: Tally,
    results: dict[str, tuple[int, int]],
    rss_start: int,
    rss_end: int,
    recovery: float,
    log: Path,
    args: argparse.Namespace,
) -> int:
    total = sum(tally.statuses.values())
    fivexx = sum(n for s, n in tally.statuses.items() if s[0] == "5")
    print("\n## Requests by status\n")
    print(table(["status", "requests"], sorted(tally.statuses.items())))
    print(f"\n{total} requests in {args.duration:.0f} s; 5xx: {fivexx}\n")
    odd = sorted((r, s, n) for (r, s), n in tally.by_route.items() if s[0] != "2")
    if odd:
        print("## Non-2xx by route\n")
        print(table(["route", "status", "requests"], odd))
        print()
    print("## Acknowledged writes read back after chaos\n")
    acked = [tally.session_acked, results["messages"][0], tally.settings_acked]
    rows = [
        (kind, a, c, f, c - f) for a, (kind, (c, f)) in zip(acked, results.items(), strict=True)
    ]
    print(table(["write", "acknowledged (2xx)", "checked", "found", "missing"], rows))
    missing = sum(r[4] for r in rows)
    print("\n## Chaos events\n")
    print(table(["kind", "events"], [(k, tally.chaos[k]) for k in CHAOS_KINDS]))
    print("\n## Service\n")
    print(table(
        ["RSS at start (MiB)", "RSS at end (MiB)", "back on Redis after chaos (s)"],
        [(f"{rss_start / 1024:.1f}", f"{rss_end / 1024:.1f}", f"{recovery:.1f}")],
    ))  # fmt: skip
    if tally.samples_5xx:
        print("\n## First 5xx responses\n")
        print("\n".join(tally.samples_5xx))
        print("\nchaos events around them:\n" + "\n".join(tally.chaos_log))
    if tally.verify_errors:
        print("\n## Read-back failures\n")
        print("\n".join(tally.verify_errors[:SAMPLES]))
    errors = log_errors(log)
    if errors:
        print("\n## Service log: error lines (counted, digits as N)\n")
        print("\n".join(errors))
    print(f"\nservice log kept at {log}")
    return 1 if fivexx or missing else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load (120)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (32)")
    parser.add_argument("--users", type=int, default=8, help="distinct users (8)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the chaos loop (1)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="sessionhub-soak-"))
    try:
        return asyncio.run(soak(args, workdir))
    except KeyboardInterrupt:
        print(f"\ninterrupted; everything started was stopped (log in {workdir})", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
