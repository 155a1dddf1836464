"""Searches under `torchrun --nproc_per_node=2` on CPU (gloo): ranks stay in sync, rank 0 records the run."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


def torchrun_search(algorithm: str, run_dir: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "exps" / "NAS-Bench-201-algos" / f"{algorithm}.py"),
               "--dataset", "digits", "--channel", "4", "--num_cells", "1", "--batch_size", "16",
               "--limit_batches", "3", "--epochs", "2", "--rand_seed", "3", "--device", "cpu", "--quiet",
               "--no_benchmark", "--save_dir", str(run_dir)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["GDAS", "DARTS-V2"])
def test_two_process_search_keeps_ranks_identical(tmp_path, algorithm):
    done = torchrun_search(algorithm, tmp_path / "run")
    assert done.returncode == 0, done.stderr[-3000:]
    log = (tmp_path / "run" / "seed-3-log.txt").read_text()
    checksums = re.search(r"parameter checksums per rank: \[([^\]]*)\]", log).group(1).split(", ")
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    assert "over 2 process(es)" in log
    summary = json.loads((tmp_path / "run" / "seed-3-summary.json").read_text())
    assert len(summary["history"]) == 2 and summary["search"]["final_genotype"].startswith("|")
    assert all(h["train_count"] == 3 * 16 for h in summary["history"]), "metrics cover both ranks' batches"
    assert list((tmp_path / "run" / "checkpoint").glob("seed-3-*.pth"))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def search_args(run_dir: Path) -> list[str]:
    return ["--dataset", "digits", "--channel", "4", "--num_cells", "1", "--batch_size", "16", "--limit_batches", "3",
            "--epochs", "2", "--rand_seed", "3", "--device", "cpu", "--quiet", "--no_benchmark",
            "--save_dir", str(run_dir)]


@pytest.mark.slow
def test_two_nodes_equal_one_node_with_two_processes(tmp_path):
    """Two torchrun launches with --nnodes 2 (a c10d rendezvous on 127.0.0.1, gloo), one process each, as two
    machines sharing a file system would run them: global rank 0 alone writes, and the run equals a 2-process
    single-node one bit for bit (weights, alphas, optimiser states, history)."""
    from xautodl.runtime import load_checkpoint

    script = str(REPO / "exps" / "NAS-Bench-201-algos" / "GDAS.py")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [subprocess.Popen([sys.executable, "-m", "xautodl.runtime.launch", "--nnodes", "2", "--node_rank",
                               str(rank), "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint",
                               endpoint, "--rdzv_id", "two-nodes", script, *search_args(tmp_path / "nodes")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for rank in (0, 1)]
    outputs = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err[-2000:] for _, err in outputs]
    done = torchrun_search("GDAS", tmp_path / "single")
    assert done.returncode == 0, done.stderr[-3000:]

    log = (tmp_path / "nodes" / "seed-3-log.txt").read_text()
    checksums = re.search(r"parameter checksums per rank: \[([^\]]*)\]", log).group(1).split(", ")
    assert len(checksums) == 2 and checksums[0] == checksums[1] and "over 2 process(es)" in log
    ours, single = (load_checkpoint(tmp_path / name / "checkpoint" / "seed-3-basic.pth")
                    for name in ("nodes", "single"))
    for key in ("model", "w_optimizer", "a_optimizer"):
        assert_equal(ours[key], single[key], key)
    strip = [{k: v for k, v in entry.items() if not k.endswith("seconds")} for entry in ours["history"]]
    assert strip == [{k: v for k, v in entry.items() if not k.endswith("seconds")} for entry in single["history"]]


def assert_equal(ours, theirs, where: str) -> None:
    import torch

    if isinstance(theirs, torch.Tensor):
        assert torch.equal(ours, theirs), f"{where} differs"
    elif isinstance(theirs, dict):
        assert set(ours) == set(theirs), where
        for key in theirs:
            assert_equal(ours[key], theirs[key], f"{where}[{key!r}]")
    elif isinstance(theirs, (list, tuple)):
        assert len(ours) == len(theirs), where
        for index, (a, b) in enumerate(zip(ours, theirs)):
            assert_equal(a, b, f"{where}[{index}]")
    else:
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"


FAKE_SRUN = """#!/usr/bin/env bash
# srun on one machine: one task per node of the job, each with its SLURM_NODEID; the first failure is the status.
while [[ "${1:-}" == --* ]]; do shift; done
pids=()
for node in $(seq 0 $((SLURM_JOB_NUM_NODES - 1))); do SLURM_NODEID=$node "$@" & pids+=($!); done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
"""
FAKE_SCONTROL = """#!/usr/bin/env bash
case "$1 ${2:-}" in
  "show hostnames") echo 127.0.0.1 ;;
  *) echo "scontrol $*" ;;
esac
"""


@pytest.mark.slow
def test_the_slurm_script_runs_a_two_node_search(tmp_path):
    """scripts/slurm-search.sh under stand-ins for srun and scontrol: two tasks join one c10d rendezvous."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", PYTHON=sys.executable,
               OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3", SLURM_JOB_NODELIST="node[1-2]", SLURM_JOB_NUM_NODES="2",
               SLURM_JOB_ID="4242", SLURM_GPUS_ON_NODE="1", SLURM_SUBMIT_DIR=str(REPO),
               XAUTODL_RDZV_PORT=str(free_port()))
    run_dir = tmp_path / "run"
    args = search_args(run_dir)[2:]  # the driver's positional arguments give the dataset and the seed
    args = args[:args.index("--rand_seed")] + args[args.index("--rand_seed") + 2:]
    done = subprocess.run(["bash", str(REPO / "scripts" / "slurm-search.sh"), "GDAS", "digits", "1", "3", *args],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    log = (run_dir / "seed-3-log.txt").read_text()
    checksums = re.search(r"parameter checksums per rank: \[([^\]]*)\]", log).group(1).split(", ")
    assert len(checksums) == 2 and checksums[0] == checksums[1] and "over 2 process(es)" in log
    assert json.loads((run_dir / "seed-3-summary.json").read_text())["epochs_done"] == 2


SIGNAL_THE_LAUNCHER = """
import os
if os.environ.get("RANK") == "0" and os.environ.get("SIGNAL_LAUNCHER_AT_STEP"):
    import signal
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    _done = [0]

    def _hook(optimizer, args, kwargs):
        if isinstance(optimizer, torch.optim.SGD):
            _done[0] += 1
            if _done[0] == int(os.environ["SIGNAL_LAUNCHER_AT_STEP"]):
                os.kill(os.getppid(), signal.SIGTERM)  # as a scheduler would signal the job's launcher

    register_optimizer_step_post_hook(_hook)
"""


@pytest.mark.slow
def test_a_preempted_two_process_search_stops_on_one_step_and_resumes_exactly(tmp_path):
    """SIGTERM to the launcher in the middle of epoch 1 (6 steps): torchrun hands it to both workers, which agree on
    the step to stop after; rank 0 writes the mid-epoch checkpoint (with both ranks' meters) and the launcher exits 75 with
    one line. The re-run ends bit for bit like an uninterrupted 2-process run."""
    from xautodl.runtime import load_checkpoint

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SIGNAL_THE_LAUNCHER)
    script = str(REPO / "exps" / "NAS-Bench-201-algos" / "GDAS.py")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(hooks), str(REPO)]),
               TF_CPP_MIN_LOG_LEVEL="3")

    def launch(run_dir: Path, signal_at: str = "") -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "xautodl.runtime.launch", "--standalone", "--nproc_per_node=2", script,
                   *search_args(run_dir), "--limit_batches", "6"]
        return subprocess.run(command, capture_output=True, text=True, timeout=600,
                              env=dict(env, SIGNAL_LAUNCHER_AT_STEP=signal_at))

    stopped = launch(tmp_path / "run", signal_at="1")
    lines = [line for line in stopped.stderr.splitlines() if line.startswith(("stopped", "terminated", "error"))]
    assert stopped.returncode == 75, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr and len(lines) == 1, stopped.stderr[-3000:]
    mid = tmp_path / "run" / "checkpoint" / "seed-3-mid-epoch.pth"
    # The workers get the signal during step 1 or 2 and agree on it one step later.
    assert re.fullmatch(rf"stopped by SIGTERM after step ([234]) of 6 of epoch 1/2, saved in {mid}; re-running the "
                        rf"same command resumes at step [345]", lines[0]), lines
    assert len(load_checkpoint(mid)["mid_epoch"]["meters"]) == 2

    assert launch(tmp_path / "run").returncode == 0
    assert launch(tmp_path / "reference").returncode == 0
    ours, reference = (load_checkpoint(tmp_path / name / "checkpoint" / "seed-3-basic.pth")
                       for name in ("run", "reference"))
    for key in ("model", "w_optimizer", "a_optimizer", "mixer"):
        assert_equal(ours[key], reference[key], key)
    strip = [{k: v for k, v in entry.items() if not k.endswith("seconds")} for entry in ours["history"]]
    assert strip == [{k: v for k, v in entry.items() if not k.endswith("seconds")} for entry in reference["history"]]
    assert not mid.exists()


LEAVE_THE_JOB = """
import sys, pathlib, torch, torch.distributed as dist
from xautodl.runtime.distributed import distributed_job
with distributed_job(torch.device("cpu")) as job:
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 2))  # keeps the group alive, as in a run
    dist.all_reduce(torch.ones(4_000_000), async_op=True)  # a tensor only gloo's worker thread still holds
pathlib.Path(sys.argv[1], f"left-{job.rank}").touch()  # got this far; only the exit remains
"""


@pytest.mark.slow
def test_processes_leave_a_job_without_aborting(tmp_path):
    """Leaving the job waits for every collective and lets gloo's worker threads free their tensors while Python is
    alive. Before, a worker that asked for the GIL during shutdown aborted the process (status 134, "terminate
    called without an active exception") after its work was done: 5 of 6 of these jobs did; a tensor-free barrier
    alone, without the pause that hands over the GIL, still 2 of 6."""
    script = tmp_path / "leave.py"
    script.write_text(LEAVE_THE_JOB)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    for launch in range(4):
        marks = tmp_path / f"launch-{launch}"
        marks.mkdir()
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               str(script), str(marks)], capture_output=True, text=True, env=env, timeout=300)
        assert sorted(path.name for path in marks.iterdir()) == ["left-0", "left-1"], done.stderr[-2000:]
        assert done.returncode == 0 and "terminate called" not in done.stderr, done.stderr[-2000:]
