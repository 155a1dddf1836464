#!/usr/bin/env bash
# A search on several machines under SLURM: sbatch starts this script once; srun starts one task per node; each
# task runs the search driver, which starts torchrun (xautodl.runtime.launch) with one process per GPU of its node
# and joins the others in a c10d rendezvous on the first node. Global rank 0 alone writes; the run folder must be
# on a file system every node sees.
#
# usage: sbatch [--nodes N] scripts/slurm-search.sh <algorithm: GDAS|DARTS-V1|DARTS-V2> <dataset> <bn: 0|1> <seed>
#              [extra flags ...]
#   e.g. sbatch --nodes 2 scripts/slurm-search.sh GDAS cifar10 1 7 --epochs 250
# Give a fixed seed (not -1): a requeued job then resumes that run from its last complete epoch.
#
# Preemption and time limits: SLURM sends SIGTERM to the job's tasks (after --signal's warning, or when a
# preempting job needs the nodes); the processes finish the step they are in, rank 0 writes a mid-epoch checkpoint
# and the run ends with "stopped by SIGTERM after step ..." (status 75) within SLURM's grace period (KillWait). The
# job is requeued (--requeue here, plus a trap that requeues it shortly before its time limit), so the same command
# starts again and resumes at that step.
#SBATCH --job-name=xautodl-search
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=08:00:00
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
#SBATCH --signal=B:USR1@300
set -euo pipefail

usage="sbatch [--nodes N] scripts/slurm-search.sh <algorithm: GDAS|DARTS-V1|DARTS-V2> <dataset> <bn: 0|1> <seed> [extra flags ...]"
[ $# -ge 4 ] || { echo "usage: $usage" >&2; exit 1; }
algorithm="$1" dataset="$2" bn="$3" seed="$4"; shift 4
[ "$seed" != "-1" ] || { echo "error: give a fixed seed so that a requeued job resumes its run" >&2; exit 1; }

# sbatch runs a copy of this script from its spool folder: the checkout is where the job was submitted from.
root="${XAUTODL_ROOT:-${SLURM_SUBMIT_DIR:-$(pwd)}}"
driver="$root/scripts-search/algos/$algorithm.sh"
[ -f "$driver" ] || { echo "error: no driver $driver (submit from the checkout, or set XAUTODL_ROOT)" >&2; exit 1; }

head_node="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
port="${XAUTODL_RDZV_PORT:-29511}"
gpus="${SLURM_GPUS_ON_NODE:-${SLURM_GPUS_PER_NODE:-1}}"
gpus="${gpus##*:}"  # "h100:4" -> 4
export NPROC="$gpus"
rendezvous="--rdzv_backend c10d --rdzv_endpoint $head_node:$port --rdzv_id $SLURM_JOB_ID"
export XAUTODL_TORCHRUN_ARGS="--nnodes $SLURM_JOB_NUM_NODES $rendezvous"

# Shortly before the time limit (--signal=B:USR1@300): requeue; SLURM then stops the tasks with SIGTERM.
trap 'echo "[slurm-search] time limit near: requeueing job $SLURM_JOB_ID"; scontrol requeue "$SLURM_JOB_ID"' USR1

cd "$root"
srun --kill-on-bad-exit=1 bash "$driver" "$dataset" "$bn" "$seed" "$@" &
step=$!
# `wait` returns early when a trapped signal arrives; keep waiting for the step itself.
while true; do
  status=0
  wait "$step" || status=$?
  kill -0 "$step" 2>/dev/null || exit "$status"
done
