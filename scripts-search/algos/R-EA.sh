#!/usr/bin/env bash
# Regularized evolution over the NATS-Bench topology benchmark (a multi-trial search, docs/multi-trial.md).
# usage: bash scripts-search/algos/R-EA.sh <dataset> <EA sample size> <seed, -1 = 500 runs> [extra flags]
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
nats_trials regularized_ea.py \
  "bash scripts-search/algos/R-EA.sh <dataset: cifar10|cifar100|ImageNet16-120> <EA sample size, e.g. 3> <seed: -1 = 500 runs> [extra flags such as --time_budget S --repeats N]" \
  required "--ea_sample_size --rand_seed" "$@"
