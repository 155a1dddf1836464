#!/usr/bin/env bash
# GDAS on the NASNet (DARTS) space: normal and reduction cells searched.
# Output: output/search-cell-darts/GDAS-<dataset>-BN<bn>/ (checkpoint/seed-<seed>-basic.pth, summary, log, cell drawings).
# usage: bash scripts-search/NASNet-space-search-by-GDAS.sh <dataset> <track_running_stats 0|1> <seed, -1 = random> [extra flags]
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
nasnet_search NASNet-space-search-by-GDAS.sh GDAS.py GDAS-NASNet-CIFAR.config "$@"
