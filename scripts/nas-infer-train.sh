#!/usr/bin/env bash
# Train a published NASNet-space genotype (GDAS_V1, DARTS_V1, DARTS_V2 / DARTS, SETN, NASNet, PNASNet) with the
# original settings: configs/archs/NAS-{CIFAR,IMAGENET}-<genotype>.config and the optimisation config basic-main
# chooses for it (configs/opts/NAS-{CIFAR,IMAGENET}.config, xautodl/config_utils/defaults.py).
# Output: output/nas-infer/<dataset>-<genotype>-<batch>/. Runs under torchrun when several GPUs are visible (NPROC).
# usage: bash scripts/nas-infer-train.sh <cifar10|cifar100|imagenet-1k> <genotype> <batch size> <seed, -1 = random> [extra flags]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
usage="bash scripts/nas-infer-train.sh <dataset: cifar10|cifar100|imagenet-1k> <genotype: GDAS_V1|DARTS_V1|DARTS_V2|SETN|NASNet|PNASNet> <batch size, e.g. 96> <seed: -1 = random> [extra flags such as --epochs N --warmup 0 --limit_batches N --device cpu]"
[ $# -ge 4 ] || usage_exit "$usage"
dataset="$1" genotype="$2" batch="$3" seed="$4"; shift 4
[ $# -eq 0 ] || [[ "$1" == -* ]] || usage_exit "$usage"
case "$dataset" in
  cifar10|cifar100) base=CIFAR ;;
  imagenet-1k) base=IMAGENET ;;
  *) usage_exit "$usage" ;;
esac
model_config="configs/archs/NAS-$base-$genotype.config"
# A genotype name is known when its arch config exists (shipped, or in ./configs/archs/ of the working directory).
if [ ! -f "$model_config" ] && [ ! -f "$XAUTODL_ROOT/$model_config" ]; then
  known=""
  for file in "$XAUTODL_ROOT"/configs/archs/NAS-"$base"-*.config; do
    name="${file##*/NAS-$base-}" && name="${name%.config}"
    [ "$name" = none ] || known="$known${known:+, }$name"
  done
  echo "error: unknown genotype '$genotype' (no $model_config); expected one of $known. A searched genotype trains with scripts/retrain-searched-net.sh" >&2
  exit 1
fi
run_entry exps/basic/basic-main.py --dataset "$dataset" --model_config "$model_config" \
  --save_dir "output/nas-infer/$dataset-$genotype-$batch" --batch_size "$batch" --rand_seed "$seed" "$@"
