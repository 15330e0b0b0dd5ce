#!/usr/bin/env bash
# The one command that installs what is needed and runs lint, types and the whole test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k recovery -x
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The tests run the service and every adapter, and lint and type-check all of it.
INSTALL_EXTRAS=dev,service
# shellcheck source=scripts/_install.sh
source scripts/_install.sh

echo "==> ruff check"
.venv/bin/ruff check .
echo "==> ruff format --check"
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
.venv/bin/pytest "$@"
