#!/usr/bin/env bash
# Install what is needed, then run the server. Arguments go to `sessionhub serve`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

INSTALL_EXTRAS=service
# shellcheck source=scripts/_install.sh
source scripts/_install.sh

echo "==> sessionhub serve $*"
exec .venv/bin/sessionhub serve "$@"
