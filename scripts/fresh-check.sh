#!/usr/bin/env bash
# A newcomer's first minutes, for real: clone this repository's HEAD into a temporary directory,
# install it there as scripts/serve.sh does (network needed: pip, and apt-get when redis-server
# is missing), then, in a network namespace of its own where nothing answers on 127.0.0.1:6379,
# start it with scripts/serve.sh and nothing configured and check (scripts/fresh_check.py) that
# it runs on a private redis-server at the default address, is healthy, lets a new user log in,
# and stops that redis-server when it stops. Needs root or unprivileged user namespaces
# (`unshare -rn`); never touches a Redis already running on this machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! unshare -rn true 2>/dev/null; then
    echo "fresh-check: cannot make a network namespace (unshare -rn): run as root, or enable" \
        "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)" >&2
    exit 2
fi

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
echo "==> cloning HEAD into ${work}/clone"
git clone --quiet "${root}" "${work}/clone"
cd "${work}/clone"

# The install step of scripts/serve.sh, here where the network is.
INSTALL_EXTRAS=service
# shellcheck source=scripts/_install.sh
source scripts/_install.sh

echo "==> scripts/serve.sh in a network namespace of its own, with no Redis configured"
unshare -rn sh -c 'ip link set lo up && exec "$0" scripts/fresh_check.py .' python3
