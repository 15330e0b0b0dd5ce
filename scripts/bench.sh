#!/usr/bin/env bash
# The one command for every benchmark of docs/BENCHMARKS.md: installs the benchmark extras and
# wrk, runs bench/run_all.py (which starts its own redis-servers) and writes its figures into the document's run_all blocks.
# Extra arguments go to run_all.py, e.g. scripts/bench.sh --sessions 100000 --skip push
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The service under test, and the benchmark extras: Flask-Session, starsessions, gunicorn,
# matplotlib, py-spy.
INSTALL_EXTRAS=dev,service,bench
# shellcheck source=scripts/_install.sh
source scripts/_install.sh

# The tools the benchmarks run besides Python: installed with apt-get when this runs as root.
need_tool() {
    local tool="$1" why="$2"
    command -v "$tool" >/dev/null 2>&1 && return 0
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing $tool with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq "$tool"
    else
        echo "$tool is needed $why: install it (Debian/Ubuntu: apt-get install $tool)" >&2
        exit 1
    fi
}
need_tool wrk "for the HTTP benchmarks"
need_tool valgrind "to count the instructions per request (bench/callgrind.py)"

cd bench
# scripts/bench.sh cache: the local cache and the targets of the no-round-trip issue
# (bench_cache.py); scripts/bench.sh adapters: each adapter against its peer (bench_adapters.py).
case "${1:-}" in
    cache) shift; exec ../.venv/bin/python bench_cache.py "$@" ;;
    adapters) shift; exec ../.venv/bin/python bench_adapters.py "$@" ;;
esac
exec ../.venv/bin/python run_all.py "$@"
