"""Train-a-net (exps/NAS-Bench-201/main.py) on tiny data in the real on-disk formats: results, skip, resume."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fakedata
from conftest import crash_at_epoch
from test_bench import write_benchmark_folder
from conftest import REPO
from xautodl.datasets import load_images
from xautodl.errors import CheckpointError
from xautodl.runtime import load_checkpoint
from xautodl.spaces.nas201 import TinyNetwork, enumerate_archs, parse_arch
from xautodl.commands import train_a_net
from xautodl.train.loop import Trainer
from xautodl.utils.flops import count_flops_m, count_params_mb

SETTINGS = ["cifar10-valid", "cifar10", "cifar100", "ImageNet16-120"]


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """$TORCH_HOME with tiny CIFAR-10/100 and ImageNet16 in their real formats, split files to match, a benchmark."""
    home = tmp_path / "torch_home"
    cifar = home / "cifar.python"
    fakedata.write_cifar10(cifar, n_train=32, n_test=16)
    fakedata.write_cifar100(cifar, n_train=32, n_test=16)
    fakedata.write_imagenet16(cifar / "ImageNet16", n_per_batch=6, n_val=24)
    monkeypatch.setenv("TORCH_HOME", str(home))
    splits = tmp_path / "splits"
    fakedata.write_split_file(splits / "cifar-split.txt", {"train": list(range(0, 32, 2)), "valid": list(range(1, 32, 2))})
    fakedata.write_split_file(splits / "cifar100-test-split.txt", {"xvalid": list(range(0, 16, 2)), "xtest": list(range(1, 16, 2))})
    val16 = len(load_images("ImageNet16-120", "test"))
    fakedata.write_split_file(splits / "imagenet-16-120-test-split.txt",
                              {"xvalid": list(range(0, val16, 2)), "xtest": list(range(1, val16, 2))})
    write_benchmark_folder(home)
    return home


def train(tmp_path, *extra: str, datasets=SETTINGS, epochs: int = 1) -> dict:
    argv = ["--arch", "resnet", "--channel", "4", "--num_cells", "1", "--datasets", *datasets, "--seeds", "777",
            "--epochs", str(epochs), "--batch_size", "8", "--limit_batches", "2", "--device", "cpu", "--quiet",
            "--split_dir", str(tmp_path / "splits"), "--save_dir", str(tmp_path / "out"), *extra]
    return train_a_net.run(argv)


def train_interrupted_in_the_second_epoch(tmp_path, monkeypatch) -> None:
    """A 2-epoch cifar10 run that dies (KeyboardInterrupt) in its second epoch, after the first one's checkpoint."""
    with monkeypatch.context() as patch:
        crash_at_epoch(patch, Trainer, "train_epoch", 1)
        with pytest.raises(KeyboardInterrupt):
            train(tmp_path, datasets=["cifar10"], epochs=2)


def result_file(tmp_path) -> Path:
    index = enumerate_archs().index(parse_arch("resnet"))
    return tmp_path / "out" / f"arch-{index:05d}-seed-777.json"


def test_trains_every_setting_and_records_sizes_and_curves(torch_home, tmp_path):
    train(tmp_path)
    result = json.loads(result_file(tmp_path).read_text())
    assert (result["schema"], result["command"], result["seed"]) == (1, "train-a-net", 777)
    assert result["train_a_net"]["arch"] == result["run"]["arch"] == str(parse_arch("resnet"))
    assert list(result["train_a_net"]["datasets"]) == SETTINGS
    assert result["finished"] and (result["epochs_done"], result["total_epochs"]) == (4, 4)
    assert result["seconds"] == pytest.approx(sum(o["train_seconds"] for o in result["train_a_net"]["datasets"].values()))
    classes = {"cifar10-valid": 10, "cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}
    for setting, outcome in result["train_a_net"]["datasets"].items():
        side = 16 if setting == "ImageNet16-120" else 32
        net = TinyNetwork(parse_arch("resnet"), 4, 1, classes[setting])
        assert outcome["params"] == pytest.approx(count_params_mb(net))
        assert outcome["flops"] == pytest.approx(count_flops_m(net, (1, 3, side, side)))
        assert outcome["finished"] and len(outcome["epochs"]) == 1
        epoch = outcome["epochs"][0]
        evaluated = {"test"} if setting == "cifar10" else {"valid", "test"}
        for name in {"train"} | evaluated:
            assert 0.0 <= epoch[f"{name}_acc"] <= 100.0 and epoch[f"{name}_loss"] > 0
        assert outcome["train_seconds"] > 0
    log = next((tmp_path / "out").glob("arch-*-log.txt")).read_text()
    assert "NATS-Bench" in log, "our result is printed next to the benchmark's"


def test_events_go_to_one_tensorboard_run_per_setting_and_seed(torch_home, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tmp_path, "--seeds", "777", "888", datasets=["cifar10", "cifar100"], epochs=2)
    folder = tmp_path / "out" / "tensorboard"
    runs = sorted(p.name for p in folder.iterdir())
    assert runs == [f"arch-{index}-seed-{seed}-{setting}" for index in [runs[0].split("-")[1]]
                    for seed in (777, 888) for setting in ("cifar10", "cifar100")]
    for name in runs:
        accumulator = EventAccumulator(str(folder / name))
        accumulator.Reload()
        assert [event.step for event in accumulator.Scalars("train/train_acc")] == [0, 1], name


def test_rerun_skips_finished_settings(torch_home, tmp_path):
    train(tmp_path, datasets=["cifar10"])
    before = result_file(tmp_path).read_text()
    train(tmp_path, datasets=["cifar10"])
    assert result_file(tmp_path).read_text() == before
    log = next((tmp_path / "out").glob("arch-*-log.txt")).read_text()
    assert "already finished" in log


def test_interrupted_setting_resumes_and_matches_an_uninterrupted_run(torch_home, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    straight.mkdir()
    (straight / "splits").symlink_to(tmp_path / "splits")
    train(straight, datasets=["cifar10"], epochs=2)

    train_interrupted_in_the_second_epoch(tmp_path, monkeypatch)
    assert not result_file(tmp_path).exists()
    train(tmp_path, datasets=["cifar10"], epochs=2)

    ours = json.loads(result_file(tmp_path).read_text())["train_a_net"]["datasets"]["cifar10"]["epochs"]
    reference = json.loads(result_file(straight).read_text())["train_a_net"]["datasets"]["cifar10"]["epochs"]
    assert [e["train_loss"] for e in ours] == [e["train_loss"] for e in reference]
    assert [e["test_acc"] for e in ours] == [e["test_acc"] for e in reference]
    name = result_file(tmp_path).stem
    a = load_checkpoint(tmp_path / "out" / "checkpoint" / f"{name}-cifar10-basic.pth")["model"]
    b = load_checkpoint(straight / "out" / "checkpoint" / f"{name}-cifar10-basic.pth")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_original_mode_flag_and_bad_arch(torch_home, tmp_path):
    from xautodl.errors import XAutoDLError

    results = train_a_net.run(["--mode", "specific-resnet", "--channel", "4", "--num_cells", "1", "--datasets", "cifar10",
                         "--seeds", "1", "--epochs", "1", "--limit_batches", "1", "--batch_size", "8", "--device",
                         "cpu", "--quiet", "--save_dir", str(tmp_path / "out")])
    assert results[1]["train_a_net"]["datasets"]["cifar10"]["finished"]
    with pytest.raises(XAutoDLError, match="valid ops"):
        train_a_net.run(["--arch", "|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|"])


def run_driver(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable, **(env_extra or {}))
    return subprocess.run(["bash", str(REPO / "scripts-search/NAS-Bench-201/train-a-net.sh"), *args],
                          capture_output=True, text=True, env=env, cwd=env.get("RUN_DIR", str(REPO)), timeout=600)


def test_driver_usage_error():
    done = run_driver("resnet", "16")
    assert done.returncode == 1 and "usage:" in done.stderr


@pytest.mark.slow
def test_driver_smoke_run(torch_home, tmp_path):
    done = run_driver("resnet", "4", "1", "--datasets", "cifar10", "--seeds", "777", "--epochs", "1",
                      "--limit_batches", "2", "--batch_size", "8", "--device", "cpu", "--quiet",
                      env_extra={"RUN_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    results = list((tmp_path / "output" / "NAS-BENCH-201-4").glob("arch-*-seed-777.json"))
    assert len(results) == 1 and json.loads(results[0].read_text())["train_a_net"]["datasets"]["cifar10"]["finished"]


def test_bf16_channels_last_training(torch_home, tmp_path):
    train(tmp_path, "--amp", "bf16", "--channels_last", datasets=["cifar10"])
    epoch = json.loads(result_file(tmp_path).read_text())["train_a_net"]["datasets"]["cifar10"]["epochs"][0]
    assert 0 < epoch["train_loss"] < 10 and 0 <= epoch["test_acc"] <= 100


@pytest.mark.slow
def test_two_process_train_a_net(torch_home, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "exps" / "NAS-Bench-201" / "main.py"), "--arch", "resnet", "--channel", "4",
               "--num_cells", "1", "--datasets", "cifar10-valid", "--seeds", "777", "--epochs", "2",
               "--batch_size", "8", "--limit_batches", "2", "--device", "cpu", "--quiet",
               "--split_dir", str(tmp_path / "splits"), "--save_dir", str(tmp_path / "out")]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(result_file(tmp_path).read_text())["train_a_net"]["datasets"]["cifar10-valid"]
    assert outcome["finished"] and len(outcome["epochs"]) == 2
    assert outcome["epochs"][0]["train_count"] == 2 * 8, "both processes' batches are counted"
    assert outcome["epochs"][0]["valid_count"] == 16, "the valid half is evaluated once, split over the processes"


def test_a_checkpoint_where_a_development_build_kept_it_gets_one_line_saying_how_to_resume_it(torch_home, tmp_path,
                                                                                               monkeypatch):
    """A development build of train-a-net wrote checkpoints/<name>-<setting>.pth; a re-run does not read it but
    stops, before training, with one line naming it and where to move it to resume; moved there, it resumes."""
    train_interrupted_in_the_second_epoch(tmp_path, monkeypatch)
    (current,) = (tmp_path / "out" / "checkpoint").glob("*-cifar10-basic.pth")
    old = tmp_path / "out" / "checkpoints" / current.name.replace("-basic.pth", ".pth")
    old.parent.mkdir()
    current.rename(old)
    with pytest.raises(CheckpointError) as refused:
        train(tmp_path, datasets=["cifar10"], epochs=2)
    assert str(refused.value) == (f"{old} was written by a development build of xautodl, before the one run layout; "
                                  f"move it to {current} to resume it, or remove it to train this setting afresh")
    assert not current.exists()
    old.rename(current)
    train(tmp_path, datasets=["cifar10"], epochs=2)
    assert "resumed from" in "".join(p.read_text() for p in (tmp_path / "out").glob("*-log.txt"))
