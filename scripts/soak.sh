#!/usr/bin/env bash
# Soak under chaos: concurrent clients against the service while its own redis-server is killed,
# frozen, made read-only and filled; prints a summary, exits non-zero on any 5xx or lost write.
# Arguments go to bench/soak.py, e.g. scripts/soak.sh --duration 300 --clients 64
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

INSTALL_EXTRAS=dev,service
# shellcheck source=scripts/_install.sh
source scripts/_install.sh

cd bench
exec ../.venv/bin/python soak.py "$@"
