#!/usr/bin/env bash
# Train one NAS-Bench-201 arch on cifar10-valid, cifar10, cifar100 and ImageNet16-120 with seeds 777 888 999, into
# output/NAS-BENCH-201-4/: those are the entry point's defaults, defined once in xautodl/commands/train_a_net.py.
# usage: bash scripts-search/NAS-Bench-201/train-a-net.sh '<arch string or name>' <channels> <cells per stage> [extra flags]
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
usage="bash scripts-search/NAS-Bench-201/train-a-net.sh '<arch string or name, e.g. resnet>' <channels, e.g. 16> <cells per stage, e.g. 5> [extra flags such as --epochs N --limit_batches N --datasets cifar10 --seeds 777]"
[ $# -ge 3 ] || usage_exit "$usage"
arch="$1" channel="$2" cells="$3"; shift 3
# A stray fourth word would otherwise land in the --seeds list the driver passes last.
[ $# -eq 0 ] || [[ "$1" == -* ]] || usage_exit "$usage"
run_entry exps/NAS-Bench-201/main.py --arch "$arch" --channel "$channel" --num_cells "$cells" "$@"
