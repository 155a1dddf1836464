#!/usr/bin/env bash
# The test command: create (or reuse) a virtual environment, install xautodl with its test extra, run pytest.
#   bash scripts/test.sh                  # the whole suite (slow end-to-end cases included)
#   bash scripts/test.sh -m "not slow"    # the quick part; any pytest arguments pass through
# The environment lives outside the clone (default ~/.cache/xautodl/venv, override with XAUTODL_VENV) so that a
# fresh clone reuses the 5 GB torch install instead of downloading it again.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${XAUTODL_VENV:-$HOME/.cache/xautodl/venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[test.sh] creating virtual environment $VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
if ! "$PY" -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "[test.sh] installing torch 2.14.1 / torchvision 0.29.1 into $VENV"
  "$PY" -m pip install --upgrade pip
  "$PY" -m pip install torch==2.14.1 torchvision==0.29.1
fi
"$PY" -m pip install -q -e ".[test]"
exec "$PY" -m pytest "$@"
