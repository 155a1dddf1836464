"""basic-main (xautodl.commands.basic_main) on tiny data in the real formats: outputs, resume, genotype sources."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, crash_at_epoch
from xautodl.runtime.distributed import per_process_batch
import torch

from fakedata import write_cifar10, write_image_folder, write_split_file
from xautodl.errors import ArchError, CheckpointError, ConfigError
from xautodl.runtime import load_checkpoint, save_checkpoint
from xautodl.runtime.run_record import new_record
from xautodl.commands import search as search_cli
from xautodl.spaces.genotypes import DARTS_V2, GDAS_V1, NASNetGenotype
from xautodl.spaces.nas201 import parse_arch
from xautodl.spaces.nasnet import build_inference_net, network_channels
from xautodl.commands import basic_main as nasnet_main
from xautodl.train.loop import Trainer
from xautodl.utils.flops import count_flops_m, count_params_mb

SMALL = ["--batch_size", "8", "--limit_batches", "2", "--device", "cpu", "--quiet", "--print_freq", "0"]

pytestmark = pytest.mark.usefixtures("one_thread")


def arch_config(path: Path, genotype: str | None, channels: int, kind: str = "cifar") -> Path:
    """A copy of configs/archs/NAS-CIFAR-*.config (or NAS-IMAGENET) with tiny channels and one cell per stage."""
    entries = {
        "super_type": ["str", f"infer-nasnet.{kind}"],
        "genotype": ["str", genotype] if genotype else ["none", "none"],
        "dataset": ["str", kind],
        "ichannel": ["int", str(channels)],
        "layers": ["int", "1"],
        "stem_multi": ["int", "3"],
        "auxiliary": ["bool", "1"],
        "drop_path_prob": ["float", "0.2" if kind == "cifar" else "0.0"],
    }
    path.write_text(json.dumps(entries, indent=1))
    return path




@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """Tiny CIFAR-10 under $TORCH_HOME/cifar.python and tiny arch configs; the working directory is tmp_path."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    write_cifar10(tmp_path / "torch_home" / "cifar.python", n_train=64, n_test=32)
    monkeypatch.chdir(tmp_path)
    arch_config(tmp_path / "gdas.config", "GDAS_V1", 8)
    arch_config(tmp_path / "none.config", None, 5)
    return tmp_path


def basic_main(run_dir: Path, model_config: Path, seed: int = 3, epochs: int = 1, warmup: int = 1, extra=()) -> dict:
    argv = ["--dataset", "cifar10", "--model_config", str(model_config),
            "--optim_config", "configs/opts/NAS-CIFAR.config", "--save_dir", str(run_dir), "--rand_seed", str(seed),
            "--epochs", str(epochs), "--warmup", str(warmup), *SMALL, *extra]
    return nasnet_main.run(argv)


def same_weights(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_published_genotype_run_writes_checkpoints_log_and_summary(workspace, monkeypatch):
    drop_path_per_epoch = []
    real_train_epoch = Trainer.train_epoch

    def recording_train_epoch(self, epoch, progress):
        metrics = real_train_epoch(self, epoch, progress)
        drop_path_per_epoch.append(self.model.drop_path_prob)
        return metrics

    monkeypatch.setattr(Trainer, "train_epoch", recording_train_epoch)
    summary = basic_main(workspace / "run", workspace / "gdas.config")
    assert drop_path_per_epoch == pytest.approx([0.0, 0.1])  # 0.2 * epoch / 2 epochs, linearly increased
    run_dir = workspace / "run"
    for name in ("checkpoint/seed-3-basic.pth", "checkpoint/seed-3-best.pth", "seed-3-log.txt"):
        assert (run_dir / name).is_file(), name
    written = json.loads((run_dir / "seed-3-summary.json").read_text())
    assert written["history"] == summary["history"]
    assert (written["schema"], written["command"]) == (1, "basic-main")
    trained = written["basic_main"]

    net = build_inference_net(GDAS_V1, dataset="cifar", C=8, N=1, num_classes=10)
    without_aux = build_inference_net(GDAS_V1, dataset="cifar", C=8, N=1, num_classes=10, auxiliary=False)
    assert trained["params"] == pytest.approx(count_params_mb(without_aux))
    assert count_params_mb(net, exclude_prefixes=()) > trained["params"]  # the auxiliary head is left out
    assert trained["flops"] == pytest.approx(count_flops_m(without_aux, (1, 3, 32, 32)))
    assert NASNetGenotype.from_dict(trained["genotype"]) == GDAS_V1
    assert (trained["genotype_name"], trained["channels"], trained["layers"], written["seed"]) == ("GDAS_V1", 8, 1, 3)
    assert written["finished"] and written["total_epochs"] == 2 and trained["auxiliary"]
    assert written["epochs_done"] == 2 and written["run"]["genotype"] == str(GDAS_V1)
    assert (trained["aux_weight"], trained["drop_path_prob"]) == (0.4, 0.2)

    history = written["history"]
    assert [entry["epoch"] for entry in history] == [0, 1]
    for entry in history:
        assert {"train_loss", "train_acc", "test_loss", "test_acc", "seconds"} <= set(entry)
        assert entry["train_count"] == 16 and entry["test_count"] == 16  # 2 batches of 8 each
    # Warmup epoch: the LR rises linearly (last step at half of the one warmup epoch), then cosine starts at 0.025.
    assert [entry["lr"] for entry in history] == pytest.approx([0.0125, 0.025])
    assert written["best"]["acc"] == max(entry["test_acc"] for entry in history)
    assert written["seconds"] == pytest.approx(sum(entry["train_seconds"] for entry in history))

    state = load_checkpoint(run_dir / "checkpoint" / "seed-3-basic.pth")
    assert state["epoch"] == 1 and state["finished"] and state["genotype"] == str(GDAS_V1)
    assert "auxiliary_head.9.weight" in state["model"]


def test_interrupted_run_resumes_exactly_and_a_finished_run_is_not_retrained(workspace, monkeypatch):
    real_train_epoch = crash_at_epoch(monkeypatch, Trainer, "train_epoch", 1)  # epoch 1's checkpoint is the last
    with pytest.raises(KeyboardInterrupt):
        basic_main(workspace / "resumed", workspace / "gdas.config", seed=-1)
    (checkpoint,) = (workspace / "resumed" / "checkpoint").glob("seed-*-basic.pth")
    seed = int(checkpoint.name.split("-")[1])
    assert load_checkpoint(checkpoint)["epoch"] == 0
    monkeypatch.setattr(Trainer, "train_epoch", real_train_epoch)

    resumed = basic_main(workspace / "resumed", workspace / "gdas.config", seed=-1)  # -1 picks the unfinished run
    straight = basic_main(workspace / "straight", workspace / "gdas.config", seed=seed)
    assert resumed["seed"] == seed
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr"):
        assert [e[key] for e in resumed["history"]] == [e[key] for e in straight["history"]], key
    final = load_checkpoint(checkpoint)
    assert same_weights(final["model"], load_checkpoint(workspace / "straight" / checkpoint.relative_to(
        workspace / "resumed"))["model"])

    before = checkpoint.stat().st_mtime_ns
    again = basic_main(workspace / "resumed", workspace / "gdas.config", seed=seed)
    assert checkpoint.stat().st_mtime_ns == before
    assert again["history"] == resumed["history"]
    assert "already finished" in (workspace / "resumed" / f"seed-{seed}-log.txt").read_text()


def test_resume_refuses_a_checkpoint_of_another_genotype(workspace):
    basic_main(workspace / "run", workspace / "gdas.config", warmup=0)
    with pytest.raises(CheckpointError, match="belongs to another run"):
        basic_main(workspace / "run", workspace / "gdas.config", warmup=0, extra=["--genotype", "DARTS_V2"])


def test_genotype_of_a_gdas_frc_search_checkpoint_trains_with_rounded_channels(workspace):
    search_config = workspace / "frc-search.config"
    search_config.write_text(json.dumps({
        "super_type": ["str", "nasnet-super"], "name": ["str", "GDAS_FRC"], "C": ["int", "4"], "N": ["int", "1"],
        "steps": ["int", "4"], "multiplier": ["int", "4"], "stem_multiplier": ["int", "3"]}))
    split = write_split_file(workspace / "split.txt", {"train": list(range(32)), "valid": list(range(32, 64))})
    search_dir = workspace / "GDAS-FRC-cifar10-BN1"
    search_cli.run("GDAS", ["--dataset", "cifar10", "--model_config", str(search_config), "--split_file", str(split),
                            "--save_dir", str(search_dir), "--rand_seed", "7", "--epochs", "1", *SMALL])
    search_checkpoint = search_dir / "checkpoint" / "seed-7-basic.pth"
    searched = NASNetGenotype.from_dict(load_checkpoint(search_checkpoint)["genotype"])
    assert searched.fixed_reduction

    summary = basic_main(workspace / "retrain", workspace / "none.config", warmup=0,
                         extra=["--genotype", str(search_checkpoint)])
    assert NASNetGenotype.from_dict(summary["basic_main"]["genotype"]) == searched
    assert summary["basic_main"]["genotype_name"] == "GDAS-FRC-cifar10-BN1"
    assert summary["basic_main"]["channels"] == 8  # 5 rounded up: the fixed reduction cell needs 2C divisible by 8
    assert "init channels 5 -> 8" in (workspace / "retrain" / "seed-3-log.txt").read_text()
    net = build_inference_net(searched, dataset="cifar", C=8, N=1, num_classes=10, auxiliary=False)
    assert summary["basic_main"]["params"] == pytest.approx(count_params_mb(net))


def test_nb201_search_checkpoint_is_refused_with_a_pointer_to_train_a_net(workspace, monkeypatch, capsys):
    arch = parse_arch("resnet")
    checkpoint = save_checkpoint(workspace / "nb201" / "seed-1-basic.pth", {
        "kind": "search", "space": "nas-bench-201", "algorithm": "GDAS", "epoch": 0, "finished": True,
        "genotype": arch.to_dict()})
    with pytest.raises(ArchError, match="NAS-Bench-201") as caught:
        basic_main(workspace / "run", workspace / "none.config", extra=["--genotype", str(checkpoint)])
    assert "train-a-net.sh" in str(caught.value) and str(arch) in str(caught.value)

    monkeypatch.setattr(sys, "argv", ["basic-main.py", "--dataset", "cifar10", "--model_config",
                                      str(workspace / "none.config"), "--genotype", str(checkpoint), "--device", "cpu"])
    with pytest.raises(SystemExit) as exited:
        nasnet_main.main()
    assert exited.value.code == 1
    assert capsys.readouterr().err.startswith("error: ")
    assert not (workspace / "run").exists()


@pytest.mark.parametrize("form", ["json file", "search summary", "training checkpoint", "printed text"])
def test_genotype_from_files_and_the_printed_form(workspace, form):
    source = workspace / "genotype-source"
    if form == "json file":
        source.write_text(json.dumps(DARTS_V2.to_dict()))
    elif form == "search summary":
        source.write_text(json.dumps(new_record(
            "search", run={}, seed=1, finished=True, epochs_done=1, total_epochs=1, seconds=1.0, args={}, history=[],
            best={}, section={"final_genotype": str(DARTS_V2), "final_genotype_dict": DARTS_V2.to_dict()})))
    elif form == "training checkpoint":  # what basic-main itself writes: the printed genotype in its identity
        save_checkpoint(source, {"kind": "train", "epoch": 0, "genotype": str(DARTS_V2)})
    else:
        source = str(DARTS_V2)
    summary = basic_main(workspace / "run", workspace / "none.config", epochs=1, warmup=0,
                         extra=["--genotype", str(source)])
    assert NASNetGenotype.from_dict(summary["basic_main"]["genotype"]) == DARTS_V2
    assert summary["basic_main"]["channels"] == 5  # a searched reduction cell has no channel constraint
    assert len(summary["history"]) == 1


def test_none_config_without_genotype_and_mismatched_configs_are_config_errors(workspace):
    with pytest.raises(ConfigError, match="--genotype"):
        basic_main(workspace / "run", workspace / "none.config")
    imagenet_config = arch_config(workspace / "imagenet.config", "GDAS_V1", 8, kind="imagenet")
    with pytest.raises(ConfigError, match="NAS-CIFAR"):
        basic_main(workspace / "run", imagenet_config)
    with pytest.raises(ConfigError, match="multiple of 3"):
        per_process_batch(8, 3)


@pytest.mark.parametrize("channels, fixed, expected", [(33, True, 36), (50, True, 52), (36, True, 36),
                                                       (33, False, 33)])
def test_channels_round_up_only_for_the_fixed_reduction_cell(channels, fixed, expected):
    genotype = NASNetGenotype(GDAS_V1.normal, GDAS_V1.normal_concat) if fixed else GDAS_V1
    assert network_channels(channels, genotype) == expected
    build_inference_net(genotype, dataset="cifar", C=expected, N=1)  # the rounded width builds
    if expected != channels:
        with pytest.raises(ArchError, match="multiple of 8"):
            build_inference_net(genotype, dataset="cifar", C=channels, N=1)


def test_imagenet_run_uses_label_smoothing_and_224_inputs(workspace):
    root = write_image_folder(workspace / "torch_home" / "ILSVRC2012", classes=3, per_class=2, size=24)
    config = arch_config(workspace / "imagenet.config", "GDAS_V1", 8, kind="imagenet")
    summary = nasnet_main.run(["--dataset", "imagenet-1k", "--data_path", str(root), "--model_config", str(config),
                               "--save_dir", str(workspace / "run"), "--rand_seed", "1", "--epochs", "1",
                               "--warmup", "0", "--batch_size", "2", "--limit_batches", "1", "--workers", "0",
                               "--device", "cpu", "--quiet"])
    trained = summary["basic_main"]
    assert trained["optim_config"]["criterion"] == "SmoothSoftmax"  # the default optimiser config for ImageNet
    assert trained["optim_config"]["label_smooth"] == 0.1
    assert trained["input_size"] == 224
    net = build_inference_net(GDAS_V1, dataset="imagenet", C=8, N=1, num_classes=1000, auxiliary=False)
    assert trained["flops"] == pytest.approx(count_flops_m(net, (1, 3, 224, 224)))
    assert summary["history"][0]["train_count"] == 2


@pytest.mark.slow
def test_two_processes_train_identical_weights(workspace):
    """torchrun --nproc_per_node=2 on CPU (gloo): DDP keeps every rank's network equal, rank 0 alone writes."""
    probe = workspace / "probe.py"
    probe.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from xautodl.runtime import world_info\n"
        "from xautodl.train import loop\nfrom xautodl.commands import basic_main as nasnet_main\n"
        "real_fit = loop.Trainer.fit\n"
        "def fit(self):\n"
        "    history = real_fit(self)\n"
        "    digest = sum(float(t.double().sum()) for t in self.model.state_dict().values())\n"
        "    Path(sys.argv[1], f'rank{world_info()[0]}.txt').write_text(repr(digest))\n"
        "    return history\n"
        "loop.Trainer.fit = fit\n"
        "nasnet_main.run(sys.argv[2:])\n")
    run_dir = workspace / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(probe),
               str(workspace), "--dataset", "cifar10", "--model_config", str(workspace / "gdas.config"),
               "--save_dir", str(run_dir), "--rand_seed", "-1", "--epochs", "1", "--warmup", "1", *SMALL]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=workspace)
    assert done.returncode == 0, done.stderr[-3000:]

    digests = [float((workspace / f"rank{rank}.txt").read_text()) for rank in (0, 1)]
    assert digests[0] == digests[1]
    (summary_path,) = run_dir.glob("seed-*-summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["basic_main"]["world_size"] == 2 and summary["basic_main"]["batch_size"] == 8
    # Each process takes 2 batches of 4 per epoch; the meters sum both shares (test: every image once).
    assert [entry["train_count"] for entry in summary["history"]] == [16, 16]
    assert [entry["test_count"] for entry in summary["history"]] == [16, 16]
    saved = load_checkpoint(run_dir / "checkpoint" / f"seed-{summary['seed']}-basic.pth")["model"]
    assert sum(float(t.double().sum()) for t in saved.values()) == digests[0]
    assert len(list(run_dir.glob("seed-*-log.txt"))) == 1
