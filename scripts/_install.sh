# shellcheck shell=bash
# Shared install steps; sourced by scripts/test.sh, scripts/serve.sh and scripts/bench.sh from
# the repo root, each setting INSTALL_EXTRAS first. Creates .venv, installs the package with
# those extras and makes sure a redis-server exists (Redis 7.0 or newer; the tests check it),
# and with the dev extra a chromium for the admin page's browser test.

: "${INSTALL_EXTRAS:?the sourcing script sets INSTALL_EXTRAS, e.g. dev,service}"

if [[ ! -x .venv/bin/python ]]; then
    echo "==> creating .venv"
    python3 -m venv .venv
fi

# Nothing to install when the venv already holds this checkout and what it needs: pip would
# still ask the index, so an installed venv could not start the service offline.
if .venv/bin/python scripts/_venv_current.py "${INSTALL_EXTRAS}" 2>/dev/null; then
    echo "==> .venv is up to date (sessionhub from this checkout, extras: ${INSTALL_EXTRAS})"
    _up_to_date=1
else
    _up_to_date=0
fi

if [[ ${_up_to_date} -eq 0 ]] && ! .venv/bin/python - <<'PY' 2>/dev/null
import sys
import pip
major, minor = (int(part) for part in pip.__version__.split(".")[:2])
sys.exit(0 if (major, minor) >= (23, 0) else 1)
PY
then
    echo "==> upgrading pip"
    .venv/bin/pip install -q --upgrade pip
fi

if [[ ${_up_to_date} -eq 0 ]]; then
    echo "==> installing sessionhub (editable, with extras: ${INSTALL_EXTRAS})"
    .venv/bin/pip install -q -e ".[${INSTALL_EXTRAS}]"
fi

_have_redis_server() {
    if [[ -n "${SESSIONHUB_REDIS_SERVER:-}" && -x "${SESSIONHUB_REDIS_SERVER}" ]]; then
        return 0
    fi
    command -v redis-server >/dev/null 2>&1
}

_have_chromium() {
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1
}

_have_prometheus() {
    command -v prometheus >/dev/null 2>&1
}

# The dev extra's tests drive the admin page in the system's chromium (Playwright never
# downloads a browser of its own here) and query the Grafana dashboard's expressions from a
# real Prometheus (Debian's prometheus: about 20 MB, half a minute).
_apt_packages=()
_have_redis_server || _apt_packages+=(redis-server)
if [[ ",${INSTALL_EXTRAS}," == *",dev,"* ]]; then
    _have_chromium || _apt_packages+=(chromium)
    _have_prometheus || _apt_packages+=(prometheus)
fi
if [[ ${#_apt_packages[@]} -gt 0 && "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing ${_apt_packages[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${_apt_packages[@]}"
fi

if [[ ",${INSTALL_EXTRAS}," == *",dev,"* ]] && ! _have_chromium; then
    echo "warning: no chromium found; the admin page's browser test needs it" \
        "(apt-get install chromium on Debian)." >&2
fi
if [[ ",${INSTALL_EXTRAS}," == *",dev,"* ]] && ! _have_prometheus; then
    echo "warning: no prometheus found; the dashboard's Prometheus test needs it" \
        "(apt-get install prometheus on Debian)." >&2
fi

if ! _have_redis_server; then
    # The tests fail on this with the same advice; the service can still use a remote Redis.
    echo "warning: no redis-server found; SessionHub needs Redis 7.0 or newer. Install it" \
        "(apt-get install redis-server on Debian 12 or Ubuntu 24.04) or set" \
        "SESSIONHUB_REDIS_SERVER=/path/to/redis-server." >&2
fi

unset -f _have_redis_server _have_chromium _have_prometheus
unset _apt_packages _up_to_date
