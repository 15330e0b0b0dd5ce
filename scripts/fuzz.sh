#!/usr/bin/env bash
# Fuzz the HTTP service from its OpenAPI document with many more, freshly drawn, examples than
# the test suite runs: SESSIONHUB_FUZZ_EXAMPLES per operation and caller (default 300).
# Extra arguments go to pytest, e.g. scripts/fuzz.sh -k messages -x
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

INSTALL_EXTRAS=dev,service
# shellcheck source=scripts/_install.sh
source scripts/_install.sh

export SESSIONHUB_FUZZ_EXAMPLES="${SESSIONHUB_FUZZ_EXAMPLES:-300}"
echo "==> fuzzing with ${SESSIONHUB_FUZZ_EXAMPLES} examples per operation"
.venv/bin/pytest tests/service/test_fuzz.py -q "$@"
