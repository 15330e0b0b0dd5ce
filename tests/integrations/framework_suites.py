"""Frameworks' own session tests, fetched from their source distributions at test time.

The file comes from the sdist of the *installed* version (``pip download --no-binary :all:``),
is cached under ``.cache/framework-tests/`` in the repository (ignored by git) so later runs
work offline, and is never copied into the repository.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = REPO_ROOT / ".cache" / "framework-tests"


def fetch_test_file(distribution: str, member: str) -> Path:
    """``member`` (a path inside the sdist, below its top folder) of the installed version."""
    version = importlib.metadata.version(distribution)
    target = CACHE / f"{distribution.lower()}-{version}" / member
    if target.exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            "-d",
            tmp,
            f"{distribution}=={version}",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        archives = list(Path(tmp).glob("*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise RuntimeError(
                f"could not fetch the {distribution} {version} sdist for its own tests "
                f"(needs the package index once; cached afterwards):\n{done.stderr}"
            )
        with tarfile.open(archives[0]) as archive:
            names = [n for n in archive.getnames() if n.split("/", 1)[-1] == member]
            if not names:
                raise RuntimeError(f"{member} is not in the {distribution} {version} sdist")
            extracted = archive.extractfile(names[0])
            assert extracted is not None
            text = extracted.read()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(text)
    partial.replace(target)
    return target


def rewritten(source: Path, replacements: list[tuple[str, str]], name: str) -> ModuleType:
    """``source`` with each ``(pattern, replacement)`` applied (each must match), as a module."""
    text = source.read_text(encoding="utf-8")
    for pattern, replacement in replacements:
        text, count = re.subn(pattern, replacement, text)
        if not count:
            raise RuntimeError(f"{source.name}: {pattern!r} matched nothing; the suite changed")
    out = CACHE / "rewritten" / f"{name}.py"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, out)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def suite_tests(module: ModuleType) -> dict[str, object]:
    """The test functions and classes of ``module``, to re-export from a collected module."""
    return {
        key: value
        for key, value in vars(module).items()
        if key.startswith("test_") or (key.startswith("Test") and isinstance(value, type))
    }
