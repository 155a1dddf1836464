# Shared helpers of the bash drivers (sourced, not run).
# - XAUTODL_ROOT: the repository root; it goes on PYTHONPATH so the drivers work without `pip install -e .`.
# - xautodl_python: the interpreter: $PYTHON if set, else python3 when it has torch, else the environment that
#   scripts/test.sh and scripts/demo.sh create (~/.cache/xautodl/venv or $XAUTODL_VENV).
# - run_entry SCRIPT ARGS...: runs an exps/ entry point, under torchrun when NPROC (default: the number of
#   visible CUDA GPUs) is above 1. It `exec`s Python (or torchrun), so a scheduler's or `timeout`'s SIGTERM sent to
#   the driver reaches the run itself. XAUTODL_TORCHRUN_ARGS replaces torchrun's `--standalone` (several machines:
#   "--nnodes 2 --node_rank 0 --rdzv_backend c10d --rdzv_endpoint HOST:PORT --rdzv_id JOB", see
#   scripts/slurm-search.sh).
XAUTODL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$XAUTODL_ROOT${PYTHONPATH:+:$PYTHONPATH}"

# ensure_venv: create (or reuse) the project's virtual environment and install xautodl (with its test and tf
# extras, so the TensorFlow tests run) into it. Sets PY to its interpreter. The environment lives outside the clone
# (default ~/.cache/xautodl/venv, override with XAUTODL_VENV) so a fresh clone reuses the 5 GB torch install.
ensure_venv() {
  local venv="${XAUTODL_VENV:-$HOME/.cache/xautodl/venv}"
  if [ ! -x "$venv/bin/python" ]; then
    echo "[xautodl] creating virtual environment $venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
  fi
  PY="$venv/bin/python"
  if ! "$PY" -c "import torch, torchvision" >/dev/null 2>&1; then
    echo "[xautodl] installing torch 2.14.1 and torchvision 0.29.1 into $venv (once)"
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q torch==2.14.1 torchvision==0.29.1
  fi
  # Reinstall only when this checkout is not the one installed or its setup.py changed (new dependencies).
  local stamp="$venv/.xautodl-install-stamp" want
  want="$XAUTODL_ROOT $(cksum < "$XAUTODL_ROOT/setup.py")"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$PY" -m pip install -q -e "$XAUTODL_ROOT[test,tf]"
    echo "$want" > "$stamp"
  fi
}

usage_exit() {
  echo "usage: $1" >&2
  exit 1
}

xautodl_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  if python3 -c "import torch" >/dev/null 2>&1; then echo python3; return; fi
  local venv="${XAUTODL_VENV:-$HOME/.cache/xautodl/venv}"
  if [ -x "$venv/bin/python" ]; then echo "$venv/bin/python"; return; fi
  echo "error: no Python with torch found; run 'bash scripts/test.sh' (creates $venv) or 'pip install -e .'" >&2
  exit 1
}

visible_gpus() {
  "$1" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0
}

run_entry() {
  local script="$XAUTODL_ROOT/$1"; shift
  local py; py="$(xautodl_python)"
  local nproc="${NPROC:-$(visible_gpus "$py")}"
  if [ "${nproc:-0}" -gt 1 ] || [ -n "${XAUTODL_TORCHRUN_ARGS:-}" ]; then
    # torchrun's options, its launcher, but a failure or a SIGTERM ends as in one process (xautodl/runtime/launch.py).
    exec "$py" -m xautodl.runtime.launch ${XAUTODL_TORCHRUN_ARGS:---standalone} --nproc_per_node="$nproc" \
      "$script" "$@"
  fi
  exec "$py" "$script" "$@"
}

# nb201_search ALGO DATASET BN SEED [extra flags]: a search on the NAS-Bench-201 space. The original settings
# (C=16, N=5, the algorithm's config, tau 10 -> 0.1, arch LR 3e-4 and decay 1e-3, the output folder) are the Python
# entry point's defaults, defined there once (xautodl/commands/search.py, the algorithm registry in
# xautodl/search/algorithms.py, xautodl/config_utils/defaults.py and xautodl/spaces/nas201.py).
nb201_search() {
  local algo="$1"; shift
  local usage="bash scripts-search/algos/$algo.sh <dataset: cifar10|cifar100|ImageNet16-120|digits|folder> <track_running_stats: 0|1> <seed: -1 = random> [extra flags such as --epochs N --limit_batches N --device cpu]"
  [ $# -ge 3 ] || usage_exit "$usage"
  local dataset="$1" bn="$2" seed="$3"; shift 3
  [ $# -eq 0 ] || [[ "$1" == -* ]] || usage_exit "$usage"
  run_entry "exps/NAS-Bench-201-algos/$algo.py" --dataset "$dataset" --track_running_stats "$bn" \
    --rand_seed "$seed" "$@"
}

# nasnet_search DRIVER ENTRY ARCH_CONFIG DATASET BN SEED [extra flags]: a search on the NASNet (DARTS) space with
# the supernet of configs/search-archs/ARCH_CONFIG; everything else (the algorithm's NASNet optimisation config,
# tau, arch LR and decay, the output folder named after the supernet) is the Python entry point's default.
nasnet_search() {
  local driver="$1" entry="$2" arch_config="$3"; shift 3
  local usage="bash scripts-search/$driver <dataset: cifar10|cifar100|ImageNet16-120> <track_running_stats: 0|1> <seed: -1 = random> [extra flags such as --epochs N --limit_batches N --device cpu]"
  [ $# -ge 3 ] || usage_exit "$usage"
  local dataset="$1" bn="$2" seed="$3"; shift 3
  [ $# -eq 0 ] || [[ "$1" == -* ]] || usage_exit "$usage"
  run_entry "exps/NAS-Bench-201-algos/$entry" --dataset "$dataset" --track_running_stats "$bn" --rand_seed "$seed" \
    --model_config "configs/search-archs/$arch_config" "$@"
}

# nats_trials ENTRY USAGE DATASET FLAGS ARGS...: a multi-trial search over NATS-Bench (exps/NATS-algos/ENTRY, one
# process: a trial is a benchmark look-up, nothing to spread over GPUs). The positional ARGS go, in order, to the
# flags named in FLAGS (space-separated). DATASET "required": the first positional is the dataset; "optional": a
# leading dataset name may be given (the original's latest drivers), else the entry point's default (cifar10, as the
# drivers of the NAS-Bench-201 paper). Extra flags pass through.
nats_trials() {
  local entry="$1" usage="$2" dataset_mode="$3" flags="$4"; shift 4
  local forwarded=() flag
  if [ "$dataset_mode" = required ]; then
    flags="--dataset $flags"
  elif [ $# -gt 0 ] && [[ "$1" =~ ^(cifar10|cifar100|ImageNet16-120)$ ]]; then
    forwarded=(--dataset "$1"); shift
  fi
  for flag in $flags; do
    [ $# -gt 0 ] && [[ "$1" != --* ]] || usage_exit "$usage"
    forwarded+=("$flag" "$1"); shift
  done
  [ $# -eq 0 ] || [[ "$1" == --* ]] || usage_exit "$usage"
  exec "$(xautodl_python)" "$XAUTODL_ROOT/exps/NATS-algos/$entry" "${forwarded[@]}" "$@"
}
