#!/usr/bin/env bash
# The first command: GDAS on the NAS-Bench-201 space on scikit-learn's handwritten digits (offline, about 3 minutes
# on 2 CPU cores), then the found cell, the ResNet cell, random cells and two collapsed cells trained the same short
# way over two seeds each, test accuracies with their spread side by side.
# Sets up the virtual environment first when needed. Flags pass through (see `--help`).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_venv
exec "$PY" -m xautodl.commands.demo "$@"
