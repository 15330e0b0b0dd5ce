"""Benchmark 1: Redis round trips and commands per operation (library and HTTP).

    python bench/bench_roundtrips.py

Every operation runs between two ``ECHO`` markers while a ``MONITOR`` connection records what
Redis executed: commands sent by a client are round trips (no operation here pipelines more than
one command, except ``stats`` and ``create``, whose pipelines count as 1; the tests check
create's single write), commands run inside a Lua script are listed separately, and writes are
counted to show when a read skips its slide.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from _common import (
    UA,
    free_port,
    login,
    process,
    python,
    redis_server,
    save_result,
    sessionhub_cmd,
    settings,
    table,
    write_config,
)

WRITES = {"hset", "hdel", "pexpireat", "zadd", "zrem", "del", "set", "setex", "expire", "pexpire"}
WRITES |= {"zremrangebyscore", "getex"}


class Monitor:
    """Records MONITOR output between markers."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=3600)
        self.lines: list[tuple[str, str, list[str]]] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(5)
        self.marker = redis.Redis.from_url(url, decode_responses=True)

    def _run(self) -> None:
        with self.client.monitor() as m:
            self._ready.set()
            for item in m.listen():
                cmd = item["command"]
                parts = cmd.split(" ") if cmd else [""]
                self.lines.append((item.get("client_type", ""), parts[0].lower(), parts))
                if parts[0].upper() == "ECHO" and len(parts) > 1 and parts[1] == "stop":
                    return

    def measure(self, fn: Callable[[], Any]) -> dict[str, Any]:
        tag = uuid.uuid4().hex[:8]
        base = len(self.lines)
        self.marker.echo(f"begin-{tag}")
        fn()
        self.marker.echo(f"end-{tag}")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if any(p[1] == "echo" and f"end-{tag}" in " ".join(p[2]) for p in self.lines[base:]):
                break
            time.sleep(0.01)
        lines = self.lines[base:]
        start = next(
            i for i, p in enumerate(lines) if p[1] == "echo" and f"begin-{tag}" in p[2][-1]
        )
        end = next(i for i, p in enumerate(lines) if p[1] == "echo" and f"end-{tag}" in p[2][-1])
        seen = lines[start + 1 : end]
        top = [name for kind, name, _ in seen if kind != "lua"]
        inner = [name for kind, name, _ in seen if kind == "lua"]
        writes = [n for n in inner + top if n in WRITES]
        return {"top": top, "inner": inner, "writes": writes}

    def close(self) -> None:
        self.marker.echo("stop")
        self._thread.join(5)
        self.marker.close()


def library_ops(url: str, mon: Monitor) -> list[dict[str, Any]]:
    from sessionhub.hub import SessionHub

    rows = []
    hub = SessionHub(settings(url))
    slow = SessionHub(settings(url, refresh_threshold=60))
    try:
        # Warm up: the first call of each Lua script on a fresh server is EVALSHA -> NOSCRIPT ->
        # EVAL (2 round trips); steady state is what is measured below.
        warm, warm_cookie = hub.create("w", data={"k": 1})
        opened = hub.open(warm_cookie)
        assert opened is not None
        opened["k"] = 2
        hub.save(opened)
        hub.destroy(warm.storage_id)
        session, cookie = hub.create("alice", data={"cart": [1, 2]}, user_agent=UA, ip="127.0.0.1")

        def modify() -> None:
            s = hub.open(cookie, touch=False)
            assert s is not None
            s["cart"] = [1, 2, 3]
            measured.append(mon.measure(lambda: hub.save(s)))

        def add(name: str, result: dict[str, Any], target: int | None) -> None:
            rows.append({"operation": name, **result, "target": target})

        add("create", mon.measure(lambda: hub.create("bob", data={"k": 1}, user_agent=UA)), None)
        add("load-and-slide (open)", mon.measure(lambda: hub.open(cookie)), 1)
        slow.open(cookie)  # refreshed just now
        add(
            "load within REFRESH_THRESHOLD (no slide)",
            mon.measure(lambda: slow.open(cookie)),
            1,
        )
        measured: list[dict[str, Any]] = []
        modify()
        add("modify one key (save)", measured[0], None)
        add("destroy", mon.measure(lambda: hub.destroy(session.storage_id)), None)
        add("stats", mon.measure(hub.stats), None)
        add("health", mon.measure(hub.health), None)
    finally:
        hub.close()
        slow.close()
    for row in rows:
        if row["operation"] in ("stats", "create"):
            row["round_trips"] = 1  # one pipeline (create: the session and the user's index)
        elif row["operation"] == "health":
            row["round_trips"] = 2  # PING, then the counting pipeline
        else:
            row["round_trips"] = len(row["top"])
    return rows


def http_ops(mon: Monitor, url: str, tmp: Any) -> list[dict[str, Any]]:
    import urllib.request

    def get(base: str, path: str, cookie: str, method: str = "GET") -> None:
        req = urllib.request.Request(  # noqa: S310 - loopback
            base + path, method=method, headers={"Cookie": cookie, "User-Agent": UA}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback
            assert resp.status == 200, resp.status

    rows = []
    for threshold in (0, 60):
        port = free_port()
        cfg_dir = tmp / f"t{threshold}"
        cfg_dir.mkdir()
        cfg = write_config(cfg_dir, url, refresh_threshold=threshold)
        base = f"http://127.0.0.1:{port}"
        with process(sessionhub_cmd(cfg, port, 1), base + "/healthz"):
            cookie = login(base)
            get(base, "/api/auth/me", cookie)
            suffix = f" (REFRESH_THRESHOLD={threshold})"
            for name, path, method, target in (
                ("SessionHub GET /api/auth/me" + suffix, "/api/auth/me", "GET", 1),
                ("SessionHub POST /api/session/extend" + suffix, "/api/session/extend", "POST", 2),
            ):
                r = mon.measure(lambda p=path, m=method, b=base, c=cookie: get(b, p, c, m))
                rows.append(
                    {"operation": name, **r, "round_trips": len(r["top"]), "target": target}
                )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    gunicorn = [python(), "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "flask_app:app"]
    env = {"BENCH_REDIS_URL": url, "BENCH_FLASK_BACKEND": "flask-session"}
    with process(gunicorn, base + "/healthz", env):
        cookie = login(base)
        for name, path, method in (
            ("Flask-Session GET /api/auth/me", "/api/auth/me", "GET"),
            ("Flask-Session POST /api/session/extend (sets a key)", "/api/session/extend", "POST"),
        ):
            r = mon.measure(lambda p=path, m=method, b=base, c=cookie: get(b, p, c, m))
            rows.append({"operation": name, **r, "round_trips": len(r["top"]), "target": None})
    return rows


def run(_: argparse.Namespace | None = None) -> dict[str, Any]:
    import tempfile
    from pathlib import Path

    with redis_server() as server, tempfile.TemporaryDirectory() as tmp:
        mon = Monitor(server.url)
        try:
            rows = library_ops(server.url, mon) + http_ops(mon, server.url, Path(tmp))
        finally:
            mon.close()
    for row in rows:
        counts: dict[str, int] = {}
        for name in row.pop("top"):
            counts[name] = counts.get(name, 0) + 1
        row["commands"] = " ".join(f"{n}x{c}" if c > 1 else n for n, c in counts.items())
        row["inside_lua"] = len(row.pop("inner"))
        row["writes"] = len(row["writes"])
        target = row["target"]
        row["met"] = "" if target is None else ("yes" if row["round_trips"] <= target else "NO")
    result = {"rows": rows}
    save_result("roundtrips", result)
    return result


def render(result: dict[str, Any]) -> str:
    headers = ["operation", "round trips", "target", "met", "client commands", "in Lua", "writes"]
    rows = [
        [
            r["operation"],
            r["round_trips"],
            "" if r["target"] is None else f"<= {r['target']}",
            r["met"],
            r["commands"],
            r["inside_lua"],
            r["writes"],
        ]
        for r in result["rows"]
    ]
    return table(headers, rows)


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    print(render(run()))


if __name__ == "__main__":
    main()
