"""What ``pip install sessionhub`` gives: the public API at the package root, and no web server."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

import sessionhub
import sessionhub.exceptions

# Installed only with the `service` extra (or a framework's): the library must not need them.
SERVICE_MODULES = ("starlette", "uvicorn", "fastapi", "flask", "django")


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
