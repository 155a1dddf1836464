#!/usr/bin/env bash
# BOHB (Optuna's TPE sampler with its Hyperband pruner) over the NATS-Bench topology benchmark (docs/multi-trial.md).
# usage: bash scripts-search/algos/BOHB.sh [dataset, default cifar10] <seed, -1 = 500 runs> [extra flags]
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
nats_trials bohb.py \
  "bash scripts-search/algos/BOHB.sh [dataset: cifar10|cifar100|ImageNet16-120] <seed: -1 = 500 runs> [extra flags such as --time_budget S --repeats N]" \
  optional "--rand_seed" "$@"
