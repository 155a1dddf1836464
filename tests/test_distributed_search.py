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
    assert len(summary["history"]) == 2 and summary["final_genotype"].startswith("|")
    assert all(h["train_count"] == 3 * 16 for h in summary["history"]), "metrics cover both ranks' batches"
    assert list((tmp_path / "run" / "checkpoint").glob("seed-3-*.pth"))
