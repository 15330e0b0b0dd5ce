"""Test helpers shared by several modules (no fixtures here; see conftest.py)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import argon2
import redis
from starlette.testclient import TestClient

from sessionhub.config import Settings
from sessionhub.frontends import Front
from sessionhub.stores.autopipeline import AutoPipeline, _Pending

T = TypeVar("T")

MakeHub = Callable[..., Any]
"""The ``make_hub`` fixture: ``make_hub(session={...})`` -> a blocking or an asyncio hub."""


class CountingPipeline(AutoPipeline):
    """Records the size of every write it makes (instrumentation of our code, not of Redis)."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.batches: list[int] = []

    def _write(self, batch: list[_Pending]) -> None:
        self.batches.append(len(batch))
        super()._write(batch)


class LoopThread:
    """An event loop in a background thread, so sync test code can drive async APIs."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout=30)
        except TimeoutError:  # say where the loop is stuck: the failure alone does not
            for task in asyncio.all_tasks(self.loop):
                print(f"pending task {task.get_name()}:", file=sys.stderr)
                task.print_stack(file=sys.stderr)
            raise

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


class Blocking:
    """Presents an async object's coroutine methods as blocking calls run on a LoopThread."""

    def __init__(self, target: Any, loop: LoopThread) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if isinstance(attr, Front):  # a feature (hub.inbox, ...): its methods are coroutines too
            return Blocking(attr, self._loop)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            return self._loop.run(result) if asyncio.iscoroutine(result) else result

        return call


class Clock:
    """A clock in ms, moved only by the test: put it on a core to cross windows without waiting."""

    def __init__(self, ms: int = 1_800_000_000_000) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def run_threads(target: Callable[[int], T], n: int) -> list[T]:
    """``target(i)`` for i in ``range(n)``, each in a thread of its own, all at once: the
    results in order; the first failure is raised once all have ended."""
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            results[i] = target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.05) -> float:
    """Poll until ``predicate()`` holds; return the seconds it took, or fail the test."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(step)
    return time.monotonic() - start


async def await_for(
    predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.01
) -> float:
    """:func:`wait_for` inside an event loop: polls without blocking the loop's other tasks."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(step)
    return time.monotonic() - start


def every_string_in_redis(client: redis.Redis) -> list[bytes]:
    """Every key name, and every value, member and field stored in the server, as bytes."""
    out: list[bytes] = []
    for key in client.scan_iter(count=1000):
        out.append(key)
        kind = client.type(key)
        if kind == b"string":
            out.append(client.get(key) or b"")
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                out += [field, value]
        elif kind == b"zset":
            out += [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"set":
            out += list(client.smembers(key))
        elif kind == b"list":
            out += client.lrange(key, 0, -1)
        elif kind == b"stream":
            for _, entry in client.xrange(key):
                for field, value in entry.items():
                    out += [field, value]
    return out


def strings_held(root: object) -> list[str]:
    """Every text reachable from ``root`` through SessionHub's own objects and the containers
    they hold: what a dump of the process's memory would show of its stores and mirrors."""
    out: list[str] = []
    seen: set[int] = set()
    stack: list[object] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        if isinstance(item, bytes):
            out.append(item.decode(errors="replace"))
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple | set | frozenset | collections.deque):
            stack += list(item)
        elif type(item).__module__.startswith("sessionhub"):
            stack += list(getattr(item, "__dict__", {}).values())
            slots = [n for c in type(item).__mro__ for n in getattr(c, "__slots__", ())]
            stack += [getattr(item, n) for n in slots if hasattr(item, n)]
    return out


def build_settings(redis_url: str | None = None, **sections: object) -> Settings:
    """Settings for a test: YAML-style UPPERCASE sections merged over fast, test-friendly values.

    A mapping value is merged into its section; anything else (``users=[...]``) is set as is.
    """
    data: dict[str, Any] = {
        "REDIS": {"SOCKET_TIMEOUT": 2.0, "CONNECT_TIMEOUT": 2.0, "PROBE_INTERVAL": 0.5},
        "SESSION": {"TYPE": "redis" if redis_url else "memory"},
    }
    if redis_url:
        data["REDIS"]["URL"] = redis_url
    for name, values in sections.items():
        if isinstance(values, dict):
            data.setdefault(name.upper(), {}).update(values)
        else:
            data[name.upper()] = values
    return Settings.model_validate({"SECRET_KEY": "test-secret-key-0123456789", **data})


PASSWORD = "correct horse battery staple"
ADMIN_KEY = "admin-key-0123456789abcdef"
# Cheap parameters keep the suite fast; production hashes come from `sessionhub hash-password`.
PASSWORD_HASH = argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1).hash(PASSWORD)


def service_settings(redis_url: str | None, **sections: object) -> Settings:
    """Settings with two users (alice, bob) and an admin key."""
    users = [{"USERNAME": name, "PASSWORD_HASH": PASSWORD_HASH} for name in ("alice", "bob")]
    return build_settings(redis_url, users=users, admin={"API_KEYS": [ADMIN_KEY]}, **sections)


def login(client: TestClient, username: str = "alice") -> str:
    """Log in and return the session cookie value the service set."""
    response = client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.cookies["session"]


def device(client: TestClient, user: str, agent: str = "testclient") -> str:
    """Log ``user`` in as a separate device (own user agent, no cookie kept); return its cookie."""
    client.cookies.clear()
    response = client.post(
        "/api/auth/login",
        json={"username": user, "password": PASSWORD},
        headers={"user-agent": agent},
    )
    assert response.status_code == 200, response.text
    client.cookies.clear()
    return response.cookies["session"]


@contextlib.contextmanager
def hub_factory(kind: str, settings_for: Callable[..., Settings]) -> Iterator[Callable[..., Any]]:
    """Factory of ``kind`` ("sync" or "async") hubs on ``settings_for(**sections)``, closed on
    exit; an async hub is driven from a loop thread, so tests call both the same way."""
    from sessionhub.hub import AsyncSessionHub, SessionHub

    made: list[Any] = []
    loop = LoopThread()

    def make(**sections: dict[str, object]) -> Any:
        settings = settings_for(**sections)
        hub: Any = SessionHub(settings) if kind == "sync" else None
        if hub is None:
            hub = Blocking(AsyncSessionHub(settings), loop)
        made.append(hub)
        return hub

    try:
        yield make
    finally:
        for hub in made:
            if isinstance(hub, SessionHub):
                hub.close()
            else:
                hub.aclose()
        loop.close()


def serve_command(config: Any, port: int, workers: int) -> list[str]:
    """The command line of `sessionhub serve` on ``port`` with ``workers`` processes."""
    command = [sys.executable, "-m", "sessionhub.cli", "serve", "--config", str(config)]
    return [*command, "--port", str(port), "--workers", str(workers)]
