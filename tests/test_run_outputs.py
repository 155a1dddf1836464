"""What a run shows a researcher: one TensorBoard run per seed (no duplicated points after a resume), alpha tags
with op names, events for the training entry points too, log lines that say how confident the search is and what
to re-train, a log that never follows a planted link, a run that survives its stdout closing, and the reason a
run landed on the CPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import REPO
from xautodl.commands import search as cli
from xautodl.errors import XAutoDLError
from xautodl.runtime import RunLogger
from xautodl.runtime.device import cpu_reason
from xautodl.runtime.run_record import RunFiles, new_record

TINY = ["--dataset", "digits", "--channel", "4", "--num_cells", "1", "--batch_size", "16", "--limit_batches", "2",
        "--device", "cpu", "--quiet", "--no_benchmark"]


def search(run_dir: Path, seed: int, epochs: int = 2, extra=()) -> dict:
    return cli.run("GDAS", TINY + ["--epochs", str(epochs), "--rand_seed", str(seed), "--save_dir", str(run_dir),
                                   *extra])


def test_run_files_are_the_paths_users_know(tmp_path):
    seed = RunFiles.of_seed(tmp_path, 5)
    assert [seed.log, seed.summary, seed.last, seed.best, seed.mid_epoch, seed.tensorboard, seed.cells,
            seed.trajectory] == [tmp_path / "seed-5-log.txt", tmp_path / "seed-5-summary.json",
                                 tmp_path / "checkpoint" / "seed-5-basic.pth", tmp_path / "checkpoint" / "seed-5-best.pth",
                                 tmp_path / "checkpoint" / "seed-5-mid-epoch.pth", tmp_path / "tensorboard" / "seed-5",
                                 tmp_path / "seed-5-cells", tmp_path / "seed-5-trajectory.png"]
    assert RunFiles.of_arch(tmp_path, 42).log == tmp_path / "arch-00042-log.txt"
    assert RunFiles.of_arch(tmp_path, 42, 777).result == tmp_path / "arch-00042-seed-777.json"
    setting = RunFiles.of_arch(tmp_path, 42, 777, "cifar10")
    assert (setting.last, setting.tensorboard) == (tmp_path / "checkpoint" / "arch-00042-seed-777-cifar10-basic.pth",
                                                   tmp_path / "tensorboard" / "arch-00042-seed-777-cifar10")
    seed.last.parent.mkdir()
    seed.last.write_bytes(b"")
    assert RunFiles.seed_checkpoints(tmp_path) == [seed.last]
    assert RunFiles.run_dir_of_checkpoint(seed.last) == tmp_path and RunFiles.run_dir_of_checkpoint(seed.log) is None


def test_a_record_has_the_shared_keys_first_then_its_section():
    record = new_record("basic-main", run={"seed": 1}, seed=1, finished=False, epochs_done=1, total_epochs=2,
                        seconds=3.0, args={}, history=[{"epoch": 0}], best={"epoch": 0}, section={"params": 0.5})
    assert list(record) == ["schema", "command", "run", "seed", "finished", "epochs_done", "total_epochs", "seconds",
                            "args", "versions", "history", "best", "basic_main"]
    assert record["versions"]["torch"] == torch.__version__
    with pytest.raises(ValueError, match="train-a-net record has no top-level history and best"):
        new_record("train-a-net", run={}, seed=1, finished=False, epochs_done=0, total_epochs=0, seconds=0.0, args={},
                   history=[], best={}, section={})
    # A multi-trial search trains no network for epochs: no epoch keys, no history, its `trials` section.
    trials = new_record("trials", run={"seed": 1}, seed=1, finished=True, seconds=0.5, args={}, section={"trials": 3})
    assert list(trials) == ["schema", "command", "run", "seed", "finished", "seconds", "args", "versions", "trials"]
    with pytest.raises(ValueError, match="trials record has no epochs_done and total_epochs"):
        new_record("trials", run={}, seed=1, finished=True, epochs_done=0, total_epochs=0, seconds=0.0, args={},
                   section={})
    with pytest.raises(ValueError, match="search record needs epochs_done and total_epochs"):
        new_record("search", run={}, seed=1, finished=True, seconds=0.0, args={}, history=[], best={}, section={})


def scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def test_each_seed_is_its_own_tensorboard_run_with_op_named_alpha_tags(tmp_path):
    run_dir = tmp_path / "run"
    search(run_dir, seed=5)
    search(run_dir, seed=6)
    assert sorted(p.name for p in (run_dir / "tensorboard").iterdir()) == ["seed-5", "seed-6"]
    assert not list(run_dir.glob("events.out.tfevents.*")), "no events mixed at the top of the run folder"
    for seed in (5, 6):
        folder = run_dir / "tensorboard" / f"seed-{seed}"
        history = json.loads((run_dir / f"seed-{seed}-summary.json").read_text())["history"]
        assert [step for step, _ in scalars(folder, "search/train_acc")] == [0, 1]
        assert [v for _, v in scalars(folder, "search/train_acc")] == pytest.approx([h["train_acc"] for h in history])
        accumulator = EventAccumulator(str(folder))
        accumulator.Reload()
        tags = accumulator.Tags()["scalars"]
        assert "alpha/1<-0/nor_conv_3x3" in tags and "alpha/3<-2/skip_connect" in tags
        assert not any(tag.split("/")[-1].isdigit() for tag in tags if tag.startswith("alpha/"))
        ops = json.loads((run_dir / f"seed-{seed}-summary.json").read_text())["search"]["op_names"]
        last = history[-1]["alphas"]["2<-1"]
        for op, probability in zip(ops, last):
            assert scalars(folder, f"alpha/2<-1/{op}")[-1][1] == pytest.approx(probability, abs=1e-6)
        assert "search/mean_alpha_entropy" in tags


def test_a_resumed_session_hides_the_points_the_interrupted_one_logged_past_its_checkpoint(tmp_path):
    folder = tmp_path / "tb"
    with RunLogger(tmp_path, tensorboard_dir=folder) as first:  # epochs 0-2 logged, only 0-1 checkpointed
        for step in range(3):
            first.scalar("search/valid_acc", 10.0 + step, step)
    # A resumed session is a later process; event files are read in name order, and within one second the names of
    # one process's writers order by a counter as text (".10" before ".9").
    time.sleep(1.1)
    with RunLogger(tmp_path, tensorboard_dir=folder) as resumed:  # resumes after epoch 2 (index 1)
        for step in range(2, 4):
            resumed.scalar("search/valid_acc", 20.0 + step, step)
    assert scalars(folder, "search/valid_acc") == [(0, 10.0), (1, 11.0), (2, 22.0), (3, 23.0)]


def test_search_log_shows_confidence_limit_batches_and_what_to_retrain(tmp_path):
    run_dir = tmp_path / "run"
    summary = search(run_dir, seed=5, epochs=2)
    log = (run_dir / "seed-5-log.txt").read_text()
    assert "2 search pairs (--limit_batches 2 of " in log, "the header counts the steps the epochs really take"
    lines = [line for line in log.splitlines() if " edges: " in line]
    assert len(lines) == 2 and "1<-0 " in lines[-1] and "mean entropy" in lines[-1] and "(uniform 1.6094)" in lines[-1]
    assert (f"to train the final genotype (epoch 2, the one reported): bash scripts-search/NAS-Bench-201/"
            f"train-a-net.sh '{summary['search']['final_genotype']}' 16 5") in log
    if summary["best"]["genotype"] != summary["search"]["final_genotype"]:
        assert f"found another genotype (in {run_dir / 'checkpoint' / 'seed-5-best.pth'})" in log


def test_the_log_does_not_follow_a_symbolic_link_planted_in_the_run_folder(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("precious\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "seed-5-log.txt").symlink_to(target)
    with pytest.raises(XAutoDLError, match="is a symbolic link; a run writes its log only to a plain file"):
        search(run_dir, seed=5, epochs=1)
    assert target.read_text() == "precious\n"


def test_a_run_goes_on_when_its_stdout_is_closed(tmp_path):
    """`... | head -1`: the reader leaves after one line; the search still finishes and writes its summary."""
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    command = [sys.executable, str(REPO / "exps/NAS-Bench-201-algos/GDAS.py"), *TINY, "--epochs", "2",
               "--rand_seed", "5", "--save_dir", str(run_dir)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    process.stdout.readline()
    process.stdout.close()  # as `head -1` does
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=300) == 0, stderr
    assert "BrokenPipe" not in stderr and "Traceback" not in stderr
    assert json.loads((run_dir / "seed-5-summary.json").read_text())["epochs_done"] == 2
    assert "final genotype:" in (run_dir / "seed-5-log.txt").read_text()


def test_the_cpu_reason_names_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert cpu_reason(torch.device("cpu")) == ""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    reason = cpu_reason(torch.device("cpu"))
    assert reason.startswith("running on the CPU: CUDA_VISIBLE_DEVICES='0' is set, but")
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "CPU-only build" in cpu_reason(torch.device("cpu"))
    assert cpu_reason(torch.device("cuda")) == ""


def test_a_rerun_with_a_random_seed_says_whether_it_resumes_or_why_it_starts_a_new_seed(tmp_path, capsys):
    run_dir = tmp_path / "run"
    first = search(run_dir, seed=-1, epochs=1)
    out = capsys.readouterr().out
    assert f"--rand_seed -1: drew seed {first['seed']}" in out
    second = search(run_dir, seed=-1, epochs=1)
    out = capsys.readouterr().out
    assert second["seed"] != first["seed"]
    assert (f"--rand_seed -1: the run(s) of seed {first['seed']} in {run_dir} are finished, so this starts a new run "
            f"with the drawn seed {second['seed']}") in out
    assert f"python -m xautodl.summary {run_dir}" in out
    log = (run_dir / f"seed-{second['seed']}-log.txt").read_text()
    assert "are finished, so this starts a new run" in log
