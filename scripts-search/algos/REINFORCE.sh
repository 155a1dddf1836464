#!/usr/bin/env bash
# REINFORCE over the NATS-Bench topology benchmark (a multi-trial search, docs/multi-trial.md).
# usage: bash scripts-search/algos/REINFORCE.sh [dataset, default cifar10] <learning rate> <seed, -1 = 500 runs> [extra flags]
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
nats_trials reinforce.py \
  "bash scripts-search/algos/REINFORCE.sh [dataset: cifar10|cifar100|ImageNet16-120] <learning rate, e.g. 0.5> <seed: -1 = 500 runs> [extra flags such as --time_budget S --repeats N]" \
  optional "--learning_rate --rand_seed" "$@"
