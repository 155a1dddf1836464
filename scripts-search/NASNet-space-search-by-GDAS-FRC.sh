#!/usr/bin/env bash
# GDAS-FRC on the NASNet (DARTS) space: the normal cell searched, the reduction cell fixed (GDAS paper, Fig. 3).
# Output: output/search-cell-darts/GDAS-FRC-<dataset>-BN<bn>/ (checkpoint/seed-<seed>-basic.pth, summary, log, cell drawings).
# usage: bash scripts-search/NASNet-space-search-by-GDAS-FRC.sh <dataset> <track_running_stats 0|1> <seed, -1 = random> [extra flags]
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
nasnet_search NASNet-space-search-by-GDAS-FRC.sh GDAS.py GDASFRC-NASNet-CIFAR.config "$@"
