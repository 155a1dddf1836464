#!/usr/bin/env bash
# GDAS on the NASNet (DARTS) space: normal and reduction cells searched.
# Output: output/search-cell-darts/GDAS-<dataset>-BN<bn>/ (checkpoint/seed-<seed>-basic.pth, summary, log, cell drawings).
# usage: bash scripts-search/NASNet-space-search-by-GDAS.sh <dataset> <track_running_stats 0|1> <seed, -1 = random> [extra flags]
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
usage="bash scripts-search/NASNet-space-search-by-GDAS.sh <dataset: cifar10|cifar100|ImageNet16-120> <track_running_stats: 0|1> <seed: -1 = random> [extra flags such as --epochs N --limit_batches N --device cpu]"
[ $# -ge 3 ] || usage_exit "$usage"
dataset="$1" bn="$2" seed="$3"; shift 3
[ $# -eq 0 ] || [[ "$1" == -* ]] || usage_exit "$usage"
run_entry exps/NAS-Bench-201-algos/GDAS.py --dataset "$dataset" --track_running_stats "$bn" --rand_seed "$seed" \
  --model_config configs/search-archs/GDAS-NASNet-CIFAR.config --config_path configs/search-opts/GDAS-NASNet-CIFAR.config \
  --tau_max 10 --tau_min 0.1 --arch_learning_rate 0.0003 --arch_weight_decay 0.001 \
  --save_dir "output/search-cell-darts/GDAS-$dataset-BN$bn" "$@"
