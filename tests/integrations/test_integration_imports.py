"""The core and the framework-free adapter base import without any web framework."""

from __future__ import annotations

import json
import subprocess
import sys


def test_core_imports_no_framework() -> None:
    """Importing sessionhub, its hub and the adapter base loads no Flask, Django or FastAPI."""
    code = (
        "import json, sys\n"
        "import sessionhub, sessionhub.hub, sessionhub.integrations, sessionhub.integrations.base\n"
        "print(json.dumps(sorted(m for m in ('flask', 'django', 'fastapi') if m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []


def test_core_imports_with_frameworks_hidden() -> None:
    """With the frameworks made unimportable, the core still imports and runs a memory session."""
    code = (
        "import sys\n"
        "for name in ('flask', 'django', 'fastapi'):\n"
        "    sys.modules[name] = None\n"
        "from sessionhub.config import Settings\n"
        "from sessionhub.hub import SessionHub\n"
        "import sessionhub.integrations.base\n"
        "hub = SessionHub(Settings.model_validate("
        "{'SECRET_KEY': 'k' * 20, 'SESSION': {'TYPE': 'memory'}}))\n"
        "session, cookie = hub.create(data={'a': 1})\n"
        "assert dict(hub.open(cookie)) == {'a': 1}\n"
        "hub.close()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
