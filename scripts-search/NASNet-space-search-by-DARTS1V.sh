#!/usr/bin/env bash
# First-order DARTS (DARTS-V1) on the NASNet (DARTS) space.
# Output: output/search-cell-darts/DARTS-V1-<dataset>-BN<bn>/ (checkpoint/seed-<seed>-basic.pth, summary, log, cell drawings).
# usage: bash scripts-search/NASNet-space-search-by-DARTS1V.sh <dataset> <track_running_stats 0|1> <seed, -1 = random> [extra flags]
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
nasnet_search NASNet-space-search-by-DARTS1V.sh DARTS-V1.py DARTS-NASNet-CIFAR.config "$@"
