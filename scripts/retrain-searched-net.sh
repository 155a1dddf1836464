#!/usr/bin/env bash
# Train the genotype found by a search (its checkpoint, e.g. output/search-cell-darts/GDAS-cifar10-BN1/checkpoint/
# seed-945-basic.pth; a genotype JSON file or the printed genotype work too) with configs/archs/NAS-{CIFAR,IMAGENET}-none.config
# and the optimisation config basic-main chooses for it (configs/opts/NAS-{CIFAR,IMAGENET}.config). Output: output/nas-infer/<dataset>-BS<batch>-<name>/ (the original's naming).
# usage: bash scripts/retrain-searched-net.sh <cifar10|cifar100|imagenet-1k> <run name> <search checkpoint> <batch size> <seed, -1 = random> [extra flags]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
usage="bash scripts/retrain-searched-net.sh <dataset: cifar10|cifar100|imagenet-1k> <run name, e.g. gdas-searched> <search checkpoint (or genotype JSON file / printed genotype)> <batch size, e.g. 96> <seed: -1 = random> [extra flags such as --epochs N --warmup 0 --limit_batches N --device cpu]"
[ $# -ge 5 ] || usage_exit "$usage"
dataset="$1" name="$2" genotype="$3" batch="$4" seed="$5"; shift 5
[ $# -eq 0 ] || [[ "$1" == -* ]] || usage_exit "$usage"
case "$dataset" in
  cifar10|cifar100) base=CIFAR ;;
  imagenet-1k) base=IMAGENET ;;
  *) usage_exit "$usage" ;;
esac
run_entry exps/basic/basic-main.py --dataset "$dataset" --model_config "configs/archs/NAS-$base-none.config" \
  --genotype "$genotype" --save_dir "output/nas-infer/$dataset-BS$batch-$name" --batch_size "$batch" \
  --rand_seed "$seed" "$@"
