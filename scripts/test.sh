#!/usr/bin/env bash
# The test command: create (or reuse) a virtual environment, install xautodl with its test extra, run pytest.
#   bash scripts/test.sh                  # the whole suite (slow end-to-end cases included)
#   bash scripts/test.sh -m "not slow"    # the quick part; any pytest arguments pass through
# The environment lives outside the clone (default ~/.cache/xautodl/venv, override with XAUTODL_VENV) so that a
# fresh clone reuses the 5 GB torch install instead of installing it again.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_venv
cd "$XAUTODL_ROOT"
exec "$PY" -m pytest "$@"
