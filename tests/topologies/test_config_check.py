"""`sessionhub config check` names the topology it would reach, without secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from test_cli import SECRET, run_cli

TOPOLOGIES: dict[str, tuple[dict[str, Any], str]] = {
    "standalone": (
        {"URL": "redis://:hunter2-secret@10.0.0.5:6380/2"},
        "# Redis standalone: redis://:***@10.0.0.5:6380/2",
    ),
    "sentinel": (
        {
            "MODE": "sentinel",
            "SENTINELS": ["10.0.0.1:26379", "10.0.0.2:26379"],
            "SENTINEL_MASTER": "sessions",
            "PASSWORD": "hunter2-secret",
        },
        "# Redis sentinel: master 'sessions' of 10.0.0.1:26379, 10.0.0.2:26379",
    ),
    "sentinel, plain before TLS": (
        {
            "MODE": "sentinel",
            "SENTINELS": ["10.0.0.1:26379"],
            "SENTINEL_MASTER": "sessions",
            "TLS": True,
            "SENTINEL_TLS": False,
        },
        "# Redis sentinel: master 'sessions' of 10.0.0.1:26379 over TLS (the sentinels without)",
    ),
    "cluster": (
        {"MODE": "cluster", "CLUSTER_NODES": ["10.0.0.1:7000", "10.0.0.2:7000"], "TLS": True},
        "# Redis cluster: startup nodes 10.0.0.1:7000, 10.0.0.2:7000 over TLS",
    ),
}


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_config_check_shows_the_topology(tmp_path: Path, name: str) -> None:
    """config check prints one line naming the mode and where Redis is, the password masked."""
    section, line = TOPOLOGIES[name]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"SECRET_KEY": SECRET, "REDIS": section}))
    result = run_cli("config", "check", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert line in result.stdout.splitlines()
    assert "hunter2-secret" not in result.stdout
