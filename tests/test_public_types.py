"""The public API's types, as strict mypy sees them: concrete, with no ``Any`` anywhere."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from mypy import api

from helpers import build_settings
from sessionhub.frontends import Front, operation
from sessionhub.hub import SessionHub

FEATURES = ("user_sessions", "preferences", "presence", "inbox", "login_attempts", "dashboard")


def _operations(front: type) -> list[str]:
    return sorted(
        {
            name
            for klass in front.__mro__
            for name, value in vars(klass).items()
            if isinstance(value, operation)
        }
    )


def _public_methods() -> list[str]:
    """``hub.x`` and ``hub.<feature>.x`` for every operation a hub offers."""
    hub = SessionHub(build_settings())  # memory-only: only its attributes are looked at
    try:
        paths = [f"hub.{name}" for name in _operations(SessionHub)]
        fronts = sorted(name for name, value in vars(hub).items() if isinstance(value, Front))
        assert fronts == sorted(FEATURES)  # a new feature's front end is checked too
        for feature in FEATURES:
            front = getattr(hub, feature)
            assert isinstance(front, Front)
            paths += [f"hub.{feature}.{name}" for name in _operations(type(front))]
        return paths
    finally:
        hub.close()


def test_every_hub_and_feature_method_has_a_concrete_type(tmp_path: Path) -> None:
    """mypy --strict reveals every public operation, blocking and awaitable, without ``Any``."""
    methods = _public_methods()
    assert len(methods) > 30  # the hub's own operations and those of six features
    lines = ["from sessionhub.hub import AsyncSessionHub, SessionHub", ""]
    lines += ["def check(hub: SessionHub) -> None:", *[f"    reveal_type({m})" for m in methods]]
    lines += ["", "def check_async(hub: AsyncSessionHub) -> None:"]
    lines += [f"    reveal_type({m})" for m in methods]
    snippet = tmp_path / "public_api.py"
    snippet.write_text("\n".join(lines) + "\n")
    limit = sys.getrecursionlimit()
    try:
        out, err, _ = api.run(["--strict", str(snippet)])
    finally:  # mypy raises the limit for itself; tests run after this one expect Python's own
        sys.setrecursionlimit(limit)
    revealed = re.findall(r'Revealed type is "(.*)"', out)
    assert len(revealed) == 2 * len(methods), out + err
    assert [(m, t) for m, t in zip(methods * 2, revealed, strict=True) if "Any" in t] == []
    blocking, awaiting = revealed[: len(methods)], revealed[len(methods) :]
    assert not any("Awaitable" in t for t in blocking)
    assert all("Awaitable" in t for t in awaiting)
