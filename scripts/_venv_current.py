"""Exit 0 when this venv already holds what ``pip install -e ".[EXTRAS]"`` would install.

    .venv/bin/python scripts/_venv_current.py EXTRAS        (e.g. dev,service)

Run by ``scripts/_install.sh`` with the venv's Python so that an installed venv starts the
service with no network (pip resolves against the index even when nothing is missing). Up to
date means: this checkout is installed in editable mode at the version ``pyproject.toml`` names,
and every requirement of the project and of those extras, and of their own requirements in
turn, is satisfied by an installed distribution. Anything it cannot decide (no ``tomllib``
before Python 3.11, pip's vendored ``packaging`` missing) counts as not up to date, so the
caller installs as before.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def missing(extras: list[str]) -> str | None:
    """What is not installed as ``pyproject.toml`` asks (``None``: nothing)."""
    import tomllib
    from pip._vendor.packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    try:
        own = metadata.distribution(project["name"])
    except metadata.PackageNotFoundError:
        return f"{project['name']} is not installed"
    if own.version != project["version"]:
        return f"{own.name} {own.version} is installed, pyproject.toml says {project['version']}"
    direct = json.loads(own.read_text("direct_url.json") or "{}")
    if not direct.get("dir_info", {}).get("editable") or direct.get("url") != ROOT.as_uri():
        return f"{project['name']} is not installed in editable mode from {ROOT}"
    own_name = _name(project["name"])
    optional = project.get("optional-dependencies", {})
    todo = [Requirement(r) for r in project.get("dependencies", [])]
    seen_extras: set[str] = set()

    def own_extras(names: set[str]) -> None:
        for extra in names - seen_extras:
            seen_extras.add(extra)
            if extra not in optional:
                raise KeyError(f"pyproject.toml has no extra {extra!r}")
            todo.extend(Requirement(r) for r in optional[extra])

    own_extras(set(extras))
    checked: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = _name(req.name)
        if name == own_name:
            own_extras(set(req.extras))
            continue
        if (name, frozenset(req.extras)) in checked:
            continue
        checked.add((name, frozenset(req.extras)))
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            return f"{req} is not installed"
        if not req.specifier.contains(dist.version, prereleases=True):
            return f"{req} is wanted, {dist.version} is installed"
        for line in dist.requires or []:
            dep = Requirement(line)
            wanted = dep.marker is None or any(
                dep.marker.evaluate({"extra": extra}) for extra in ("", *req.extras)
            )
            if wanted:
                dep.marker = None
                todo.append(dep)
    return None


def main() -> int:
    extras = [e for e in (sys.argv[1] if len(sys.argv) > 1 else "").split(",") if e]
    try:
        reason = missing(extras)
    except Exception as exc:  # undecidable here: let pip decide
        reason = f"cannot tell ({type(exc).__name__}: {exc})"
    if reason is not None:
        print(reason, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
