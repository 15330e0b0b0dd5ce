"""What ``pip install sessionhub`` gives: the public API at the package root, and no web server.

The install tests build a wheel of this tree and install it, with the base dependencies pip
resolves from its metadata and nothing else, into a fresh virtualenv: a real ``pip install
sessionhub``. That takes about 15 s with pip's cache and proves what a meta_path hook cannot,
that the declared dependencies are enough and that the wheel holds every file the library needs.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sessionhub
import sessionhub.exceptions

# Installed only with the `service` extra (or a framework's): the library must not need them.
SERVICE_MODULES = (
    "starlette",
    "uvicorn",
    "argon2",
    "fastapi",
    "flask",
    "django",
    "prometheus_client",
)
# Not opentelemetry: redis-py itself imports it whenever it is installed.
REPO = Path(__file__).resolve().parents[1]


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )


def test_root_exports_the_public_api() -> None:
    """The hubs, settings, session and every exception are importable from ``sessionhub``."""
    from sessionhub import AsyncSessionHub, Session, SessionHub, Settings, load_settings
    from sessionhub.config import Settings as ConfigSettings
    from sessionhub.config import load_settings as config_load_settings
    from sessionhub.hub import AsyncSessionHub as HubAsync
    from sessionhub.hub import SessionHub as HubSync
    from sessionhub.session import Session as SessionClass

    assert (SessionHub, AsyncSessionHub) == (HubSync, HubAsync)
    assert (Settings, load_settings) == (ConfigSettings, config_load_settings)
    assert Session is SessionClass
    assert set(sessionhub.__all__) <= set(dir(sessionhub))
    for name in sessionhub.__all__:
        assert getattr(sessionhub, name) is not None


def test_root_exports_every_exception() -> None:
    """Each exception class defined in sessionhub.exceptions is exported, the same object."""
    defined = {
        name: value
        for name, value in vars(sessionhub.exceptions).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == "sessionhub.exceptions"
    }
    assert defined
    for name, value in defined.items():
        assert name in sessionhub.__all__
        assert getattr(sessionhub, name) is value


def test_importing_the_root_loads_no_service_and_no_hub() -> None:
    """``import sessionhub`` loads neither the service, a web server, nor the hub before use."""
    code = (
        "import json, sys\n"
        "import sessionhub\n"
        "before = sorted(sys.modules)\n"
        "from sessionhub import SessionHub, AsyncSessionHub, Settings, load_settings, Session\n"
        "after = sorted(sys.modules)\n"
        "print(json.dumps([before, after]))\n"
    )
    before, after = json.loads(_run_python(code).stdout)
    assert "sessionhub.hub" not in before
    assert "sessionhub.config" not in before
    assert "sessionhub.hub" in after
    for modules in (before, after):
        assert not [m for m in modules if m.startswith("sessionhub.service")]
        assert not [m for m in modules if m.split(".")[0] in SERVICE_MODULES]


def test_unknown_root_attribute_is_an_attribute_error() -> None:
    """A name the package does not export raises AttributeError, as for any module."""
    with pytest.raises(AttributeError, match="NoSuchThing"):
        _ = sessionhub.NoSuchThing


def _clean_env() -> dict[str, str]:
    """The environment without anything that would point Python or SessionHub elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_", "SESSIONHUB_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.pop("SECRET_KEY", None)
    return env


def _check(argv: list[str | Path], cwd: Path) -> None:
    result = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=300, env=_clean_env()
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding this tree's wheel and only its base dependencies."""
    root = tmp_path_factory.mktemp("base-install")
    # Built from a copy, so the build leaves no build/ or egg-info behind in the work tree.
    tree = root / "tree"
    shutil.copytree(
        REPO / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, tree / name)
    pip = [sys.executable, "-m", "pip"]
    _check([*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", root / "dist", tree], root)
    (wheel,) = (root / "dist").glob("sessionhub-*.whl")
    venv = root / "venv"
    # No pip inside: this environment's pip installs into it, which saves seconds.
    _check([sys.executable, "-m", "venv", "--without-pip", venv], root)
    _check([*pip, "--python", venv / "bin" / "python", "install", "--quiet", wheel], root)
    return venv


def test_base_install_runs_the_library_without_a_web_server(
    base_venv: Path, tmp_path: Path
) -> None:
    """With no extras, no web server or framework is installed, and a memory session works."""
    code = textwrap.dedent(
        """
        import asyncio, importlib.util, json, sys
        absent = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]
        import sessionhub
        from sessionhub import AsyncSessionHub, SessionHub, Settings, load_settings

        settings = load_settings()
        assert isinstance(settings, Settings) and settings.session.type == "memory"
        hub = SessionHub(settings)
        session, cookie = hub.create("alice", data={"cart": [42]})
        opened = hub.open(cookie)
        hub.close()

        async def run_async():
            hub = AsyncSessionHub(settings)
            session, cookie = await hub.create(data={"n": 1})
            opened = await hub.open(cookie)
            await hub.aclose()
            return dict(opened)

        print(json.dumps({
            "absent": absent,
            "file": sessionhub.__file__,
            "sync": [opened.user_id, dict(opened)],
            "async": asyncio.run(run_async()),
        }))
        """
    )
    env = {
        **_clean_env(),
        "SESSIONHUB_SESSION__TYPE": "memory",
        "SECRET_KEY": "packaging-test-secret-0123",
    }
    result = subprocess.run(
        [base_venv / "bin" / "python", "-c", code, *SERVICE_MODULES],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["absent"] == list(SERVICE_MODULES)
    assert Path(out["file"]).is_relative_to(base_venv)
    assert out["sync"] == ["alice", {"cart": [42]}]
    assert out["async"] == {"n": 1}


@pytest.mark.parametrize("command", ["serve", "hash-password"])
def test_service_commands_without_the_extra_say_what_to_install(
    base_venv: Path, tmp_path: Path, command: str
) -> None:
    """serve and hash-password without the service extra print one line and exit 2."""
    result = subprocess.run(
        [base_venv / "bin" / "sessionhub", command],
        cwd=tmp_path,
        input="a-password\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(),
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "pip install 'sessionhub[service]'" in lines[0]
    assert command in lines[0]
