#!/usr/bin/env bash
# The test command: create (or reuse) a virtual environment, install xautodl with its test extra, run pytest.
#   bash scripts/test.sh                  # the whole suite (slow end-to-end cases included)
#   bash scripts/test.sh -m "not slow"    # the quick part; any pytest arguments pass through
#   XAUTODL_TEST_WORKERS=0 bash scripts/test.sh tests/test_ops.py   # one process, no workers
# The environment lives outside the clone (default ~/.cache/xautodl/venv, override with XAUTODL_VENV) so that a
# fresh clone reuses the 5 GB torch install instead of installing it again.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_venv
cd "$XAUTODL_ROOT"
# Two workers (the machine's two cores), each test file on one worker (module fixtures are built once):
# 7 minutes instead of 10.5 (2026-12-03). XAUTODL_TEST_WORKERS=0 runs in this process (pdb, -s).
exec "$PY" -m pytest -n "${XAUTODL_TEST_WORKERS:-2}" --dist loadfile "$@"
