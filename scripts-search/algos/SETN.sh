#!/usr/bin/env bash
# SETN on the NAS-Bench-201 space.
# usage: bash scripts-search/algos/SETN.sh <dataset> <track_running_stats 0|1> <seed, -1 = random> [extra flags]
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
nb201_search SETN "$@"
