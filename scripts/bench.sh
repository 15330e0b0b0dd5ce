#!/usr/bin/env bash
# The one command for every benchmark of docs/BENCHMARKS.md: installs the benchmark extras and
# wrk, runs bench/run_all.py (which starts its own redis-servers) and rewrites the document.
# Extra arguments go to run_all.py, e.g. scripts/bench.sh --sessions 100000 --skip push
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The service under test, and the benchmark extras: Flask-Session, gunicorn, matplotlib, py-spy.
INSTALL_EXTRAS=dev,service,bench
# shellcheck source=scripts/_install.sh
source scripts/_install.sh

if ! command -v wrk >/dev/null 2>&1; then
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing wrk with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq wrk
    else
        echo "wrk is needed for the HTTP benchmarks: install it (Debian/Ubuntu: apt-get install wrk)" >&2
        exit 1
    fi
fi

cd bench
# scripts/bench.sh cache: the local cache's figures (bench_cache.py), against starsessions too.
if [[ "${1:-}" == "cache" ]]; then
    shift
    ../.venv/bin/python -m pip install -q starsessions
    exec ../.venv/bin/python bench_cache.py "$@"
fi
exec ../.venv/bin/python run_all.py "$@"
