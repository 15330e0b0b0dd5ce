"""The cost of encryption at rest and compression, measured on and off in the same run.

    python bench/bench_values.py [--rounds 5] [--ops 2000]

Per configuration (plain; encrypted; compressed; both) and per session size (a typical small
session, a large 40 kB cart): the time of an open (load + slide + decode of the data) and of a
save of one changed key, with the blocking hub on a local redis-server, and the bytes the
session takes in Redis (``MEMORY USAGE``). Then where a small session's bytes go with encryption
on: each field's stored length, and the hash's bytes and encoding at Redis's default
``hash-max-listpack-value`` (64) and at 128. Configurations run in turn, round after round, and each
figure is the median round, so a slow spell of the shared machine cannot land on one only.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import time
from typing import Any

from _common import UA, redis_server, save_result, settings_dict, table
from sessionhub.config import Settings
from sessionhub.hub import SessionHub

KEY = {"ID": "b1", "KEY": base64.b64encode(os.urandom(32)).decode()}
SMALL = {"cart": [1, 2, 3], "csrf": "0123456789abcdef0123456789abcdef", "theme": "dark"}
LARGE = {"cart": [{"sku": f"item-{i}", "qty": i % 5, "note": "standard"} for i in range(800)]}
CONFIGS: dict[str, dict[str, Any]] = {
    "plain": {"SESSION": {"COMPRESS_THRESHOLD": 0}},
    "encrypted": {"SESSION": {"COMPRESS_THRESHOLD": 0}, "ENCRYPTION": {"KEYS": [KEY]}},
    "compressed": {"SESSION": {"COMPRESS_THRESHOLD": 1024}},
    "both": {"SESSION": {"COMPRESS_THRESHOLD": 1024}, "ENCRYPTION": {"KEYS": [KEY]}},
}


def _hub(url: str, extra: dict[str, Any]) -> SessionHub:
    data = settings_dict(url)
    for section, values in extra.items():
        data.setdefault(section, {}).update(values)
    return SessionHub(Settings.model_validate(data))


def _measure(hub: SessionHub, data: dict[str, Any], ops: int) -> dict[str, float]:
    session, cookie = hub.create("alice", data=data, user_agent=UA, ip="127.0.0.1")
    assert hub.client is not None
    name = hub.manager.core.redis_ops.keys.session(session.storage_id)  # type: ignore[union-attr]
    size = int(hub.client.memory_usage(name, samples=0) or 0)
    start = time.perf_counter_ns()
    for _ in range(ops):
        opened = hub.open(cookie)
        assert opened is not None
        opened.record.load_data()
    open_us = (time.perf_counter_ns() - start) / ops / 1000
    start = time.perf_counter_ns()
    for i in range(ops):
        session["csrf"] = f"token-{i}"
        hub.save(session)
    save_us = (time.perf_counter_ns() - start) / ops / 1000
    hub.destroy(session.storage_id)
    return {"open_us": open_us, "save_us": save_us, "bytes": size}


LISTPACK_VALUE = "128"
"""The ``hash-max-listpack-value`` the breakdown also measures (Redis's default is 64)."""


def _stored(hub: SessionHub, **fields: Any) -> tuple[int, str, dict[str, int]]:
    """A session created with ``fields``: its ``MEMORY USAGE``, encoding and field lengths."""
    session, _ = hub.create("alice", **fields)
    assert hub.client is not None
    name = hub.manager.core.redis_ops.keys.session(session.storage_id)  # type: ignore[union-attr]
    size = int(hub.client.memory_usage(name, samples=0) or 0)
    encoding = str(hub.client.object("encoding", name))
    lengths = {k: len(v.encode()) for k, v in hub.client.hgetall(name).items()}
    hub.destroy(session.storage_id)
    return size, encoding, lengths


def breakdown() -> list[list[Any]]:
    """Where an encrypted small session's bytes go: each field's length, plain and sealed, and
    the hash's memory and encoding at Redis's default and a larger ``hash-max-listpack-value``."""
    shapes = {
        "signed-in": {"data": SMALL, "user_agent": UA, "ip": "127.0.0.1"},
        "bare": {},
    }
    rows: list[list[Any]] = []
    for listpack in ("64", LISTPACK_VALUE):
        with redis_server("--hash-max-listpack-value", listpack) as server:
            hubs = {name: _hub(server.url, CONFIGS[name]) for name in ("plain", "encrypted")}
            try:
                for shape, fields in shapes.items():
                    plain = _stored(hubs["plain"], **fields)
                    sealed = _stored(hubs["encrypted"], **fields)
                    grown = {k: v for k, v in sealed[2].items() if v != plain[2].get(k)}
                    rows.append(
                        [
                            listpack,
                            shape,
                            f"{plain[0]} ({plain[1]})",
                            f"{sealed[0]} ({sealed[1]})",
                            f"{sealed[0] / plain[0]:.2f}x",
                            ", ".join(f"{k} {plain[2].get(k, 0)}->{v}" for k, v in grown.items()),
                        ]
                    )
            finally:
                for hub in hubs.values():
                    hub.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=2000)
    args = parser.parse_args()
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    with redis_server() as server:
        hubs = {name: _hub(server.url, extra) for name, extra in CONFIGS.items()}
        try:
            for _ in range(args.rounds):
                for size, data in (("small", SMALL), ("large", LARGE)):
                    for name, hub in hubs.items():
                        found = _measure(hub, data, args.ops if size == "small" else args.ops // 4)
                        results.setdefault(size, {}).setdefault(name, []).append(found)
        finally:
            for hub in hubs.values():
                hub.close()
    summary: dict[str, dict[str, dict[str, float]]] = {}
    rows = []
    for size, by_config in results.items():
        base = {
            k: statistics.median(r[k] for r in by_config["plain"]) for k in by_config["plain"][0]
        }
        for name, runs in by_config.items():
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            summary.setdefault(size, {})[name] = med
            rows.append(
                [
                    size,
                    name,
                    med["open_us"],
                    f"{med['open_us'] / base['open_us']:.2f}x",
                    med["save_us"],
                    f"{med['save_us'] / base['save_us']:.2f}x",
                    med["bytes"],
                    f"{med['bytes'] / base['bytes']:.2f}x",
                ]
            )
    headers = [
        "session",
        "config",
        "open µs",
        "vs plain",
        "save µs",
        "vs plain",
        "bytes",
        "vs plain",
    ]
    print(table(headers, rows))
    where = breakdown()
    print()
    print(
        table(
            ["hash-max-listpack-value", "session", "plain B", "encrypted B", "x", "fields"],
            where,
        )
    )
    save_result("values", {**summary, "breakdown": where})


if __name__ == "__main__":
    main()
