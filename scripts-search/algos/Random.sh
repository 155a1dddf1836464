#!/usr/bin/env bash
# Random search without weight sharing over the NATS-Bench topology benchmark (docs/multi-trial.md).
# usage: bash scripts-search/algos/Random.sh [dataset, default cifar10] <seed, -1 = 500 runs> [extra flags]
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
nats_trials random_wo_share.py \
  "bash scripts-search/algos/Random.sh [dataset: cifar10|cifar100|ImageNet16-120] <seed: -1 = 500 runs> [extra flags such as --time_budget S --repeats N]" \
  optional "--rand_seed" "$@"
