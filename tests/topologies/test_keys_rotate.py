"""`sessionhub keys rotate` on every topology: on Redis Cluster it must visit every master."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import yaml

from helpers import hub_factory
from sessionhub.cli import main
from sessionhub.hub import SessionHub
from sessionhub.rotation import KeyRotation
from sessionhub.stores.topology import masters
from topology_fixtures import Topology

K1 = {"ID": "k1", "KEY": base64.b64encode(os.urandom(32)).decode()}
K2 = {"ID": "k2", "KEY": base64.b64encode(os.urandom(32)).decode()}
USERS = 24
SEALED = ("d:", "a", "i", "settings", "b")
"""Stored values that go through the value codec: data, agent, IP, settings, message bodies."""


def _fill(topology: Topology) -> list[str]:
    """Sessions, settings and messages of USERS users under K1; their cookies."""
    hub = SessionHub(topology.settings(encryption={"KEYS": [K1]}))
    cookies = []
    try:
        for i in range(USERS):
            user = f"user{i}"
            _, cookie = hub.create(user, data={"n": i}, user_agent=f"agent {i}", ip=f"10.0.0.{i}")
            hub.preferences.patch(user, {"custom": {"note": f"note {i}"}})
            hub.inbox.send(user, {"text": f"hello {i}"})
            cookies.append(cookie)
    finally:
        hub.close()
    return cookies


def _sealed_values(topology: Topology) -> dict[str, list[str]]:
    """Every stored value that the codec seals, per master, read on the master itself."""
    found: dict[str, list[str]] = {}
    for master, client in zip(topology.masters(), topology.clients(), strict=True):
        values: list[str] = []
        try:
            for key in client.scan_iter(match="session:*", count=1000):
                kind = client.type(key)
                if kind == "hash":
                    values += [v for f, v in client.hgetall(key).items() if f.startswith(SEALED)]
                elif kind == "string" and key.endswith(":settings"):
                    values.append(client.get(key) or "")
                elif kind == "stream":
                    values += [entry["b"] for _, entry in client.xrange(key)]
        finally:
            client.close()
        found[f"{master.host}:{master.port}"] = values
    return found


def _dbsize(topology: Topology) -> int:
    """The keys of every master together."""
    total = 0
    for client in topology.clients():
        try:
            total += int(client.dbsize())
        finally:
            client.close()
    return total


def _config(tmp_path: Path, topology: Topology, keys: list[dict[str, str]]) -> str:
    path = tmp_path / "config.yaml"
    data = {
        "SECRET_KEY": "test-secret-key-0123456789",
        "REDIS": topology.redis,
        "ENCRYPTION": {"KEYS": keys},
    }
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_keys_rotate_reencrypts_the_values_of_every_master(
    tmp_path: Path, topology: Topology, capsys: pytest.CaptureFixture[str]
) -> None:
    """Values on every master (every shard of a cluster) end up under the first key; the old
    key can then be removed and every session, setting and message still reads."""
    cookies = _fill(topology)
    before = _sealed_values(topology)
    assert all(before.values()), f"a master holds no data to rotate: {before}"
    assert all(v.startswith("\x1eek1:") for values in before.values() for v in values)

    config = _config(tmp_path, topology, [K2, K1])
    assert main(["keys", "rotate", "--batch", "7", "--config", config]) == 0, capsys.readouterr()
    assert "rotation to key 'k2' complete" in capsys.readouterr().out

    after = _sealed_values(topology)
    stale = {m: [v[:6] for v in vs if not v.startswith("\x1eek2:")] for m, vs in after.items()}
    assert stale == {m: [] for m in after}
    assert sum(map(len, after.values())) == sum(map(len, before.values()))

    only_new = SessionHub(topology.settings(encryption={"KEYS": [K2]}))
    try:
        for i, cookie in enumerate(cookies):
            opened = only_new.open(cookie)
            assert opened is not None
            assert (opened["n"], opened.record.user_agent) == (i, f"agent {i}")
            assert opened.record.ip == f"10.0.0.{i}"
            assert only_new.preferences.get(f"user{i}")["custom"] == {"note": f"note {i}"}
            page = only_new.inbox.page(f"user{i}")
            assert [m["body"] for m in page["messages"]] == [{"text": f"hello {i}"}]
        assert only_new.manager.values.unlisted == 0
        assert only_new.manager.values.rejected == 0
    finally:
        only_new.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_rotation_stopped_between_masters_resumes_on_the_next(
    topology: Topology, kind: str
) -> None:
    """Run one batch at a time from a fresh rotation object each time (as a restarted command
    would): the saved position carries it across masters to the end, on both front ends."""
    _fill(topology)
    with hub_factory(kind, lambda: topology.settings(encryption={"KEYS": [K2, K1]})) as make:
        hub = make()
        steps = 0
        while True:
            nodes = KeyRotation(
                hub.manager.values, "session:", batch=5, masters=lambda: masters(hub.client)
            )
            keys = _dbsize(topology)
            progress = hub.run(nodes.step())
            steps += 1
            assert progress.total == keys, "the total counts the keys of every master"
            if progress.done:
                break
            assert steps < 1000
    assert progress.unreadable == progress.conflicts == 0
    after = _sealed_values(topology)
    assert all(v.startswith("\x1eek2:") for values in after.values() for v in values)
