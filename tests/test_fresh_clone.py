"""The README's first command on a fresh machine: a clean clone, no Redis, the real default address.

The clone is of this repository's HEAD (what is committed, not the working tree). It runs inside
a network namespace of its own (``unshare -rn``), where nothing answers on 127.0.0.1:6379, so the
service's real default address is used while this machine's own Redis on that address is never
reached. The steps and their checks are ``scripts/fresh_check.py``'s, the same that
``scripts/fresh-check.sh`` runs after a full install.

The install: the namespace has no network, and a real install here would download the
dependencies on every run. So the clone's ``.venv`` is made outside the namespace from this
test run's own environment: a new venv whose site-packages path includes the running venv's
(the same installed dependencies, version for version, pip and setuptools included), with the
clone itself installed into it by pip (editable, ``--no-deps --no-build-isolation --no-index``).
Inside the namespace, ``scripts/serve.sh`` then runs its install step as it is; finding the venv
up to date (``scripts/_venv_current.py``), it installs nothing and needs no network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from redis_server import find_redis_server

ROOT = Path(__file__).resolve().parent.parent


def namespaces_work() -> bool:
    """Whether this process may make a network namespace (root, or user namespaces allowed)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True)
    return probe.returncode == 0


def clone_with_installed_venv(destination: Path) -> Path:
    """A clean clone of HEAD at ``destination`` whose ``.venv`` reuses this run's dependencies."""
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(destination)], check=True)
    venv = destination / ".venv"
    # Without its own pip and setuptools: the shared ones (and setuptools >= 70.1 to build).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    shared = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "_shared_dependencies.pth").write_text("\n".join(sorted(shared)) + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "-e", str(destination)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return destination


def run_fresh_check(checkout: Path, redis_server_bin: str) -> list[dict[str, object]]:
    """``scripts/fresh_check.py`` of the clone, in a network namespace of its own."""
    env = {**os.environ, "SESSIONHUB_REDIS_SERVER": redis_server_bin}
    done = subprocess.run(
        ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
         sys.executable, str(checkout / "scripts" / "fresh_check.py"), str(checkout)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    steps = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0, steps[-1] if steps else done.stderr
    return steps


@pytest.mark.skipif(not namespaces_work(), reason="unshare -rn is not allowed here")
def test_fresh_clone_serves_healthy_on_its_own_redis_at_the_default_address(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    """A clean clone, started with scripts/serve.sh and nothing configured where nothing
    answers on 127.0.0.1:6379, runs a private redis-server there, reports healthy, lets a new
    user log in, and stops that redis-server when it stops."""
    checkout = clone_with_installed_venv(tmp_path / "clone")
    binary = find_redis_server(pytestconfig.getoption("redis_server_bin"))
    steps = run_fresh_check(checkout, binary)
    by_step = {step["step"]: step for step in steps}
    assert all(step["ok"] for step in steps)
    assert by_step["private redis-server on the default address"]["url"] == (
        "redis://127.0.0.1:6379/0"
    )
    assert by_step["health"]["health"] == "healthy"
    assert by_step["login"]["user"] == "alice"
    assert by_step["stopped with the service"]["exit_code"] == 0
