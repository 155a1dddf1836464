#!/usr/bin/env bash
# DARTS-V2 on the NAS-Bench-201 space.
# usage: bash scripts-search/algos/DARTS-V2.sh <dataset> <track_running_stats 0|1> <seed, -1 = random> [extra flags]
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
nb201_search DARTS-V2 "$@"
