"""SETN, ENAS and RANDOM-NAS (RSPS): tiny searches through the real loop, resume, the final selection, the ENAS
controller's update, and the drivers."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import REPO, batch, crash_at_epoch, tiny_supernet
from xautodl.commands import search as cli
from xautodl.config_utils import load_config
from xautodl.errors import ConfigError
from xautodl.optim.schedules import schedule_from_config
from xautodl.runtime import load_checkpoint
from xautodl.search.registry import build_algorithm
from xautodl.search.enas import ENAS
from xautodl.search.loop import PHASE_PASSES, SearchLoop
from xautodl.search.weight_sharing import ArchMixer

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny convolutions: one thread is fastest on a busy CPU

ALGORITHMS = ("SETN", "ENAS", "RANDOM-NAS")
CONFIGS = {"SETN": "SETN", "ENAS": "ENAS", "RANDOM-NAS": "RANDOM"}
# The shipped settings, shrunk: few candidates per selection, a controller phase of 2 x 2 samples.
TINY_SETTINGS = {"select_num": ["int", "3"], "test_batch_size": ["int", "32"], "controller_train_steps": ["int", "2"],
                 "controller_num_aggregate": ["int", "2"], "controller_epoch_samples": ["int", "2"],
                 "controller_num_samples": ["int", "4"]}
TINY = ["--dataset", "digits", "--channel", "4", "--num_cells", "1", "--batch_size", "16", "--limit_batches", "2",
        "--device", "cpu", "--quiet", "--no_benchmark"]


def tiny_config(tmp_path: Path, algorithm: str) -> Path:
    shipped = json.loads((REPO / "configs" / "nas-benchmark" / "algos" / f"{CONFIGS[algorithm]}.config").read_text())
    path = tmp_path / f"{algorithm}-tiny.config"
    path.write_text(json.dumps({**shipped, **{k: v for k, v in TINY_SETTINGS.items() if k in shipped}}))
    return path


def search(tmp_path: Path, algorithm: str, name: str = "run", epochs: int = 2, seed: int = 5) -> dict:
    argv = TINY + ["--epochs", str(epochs), "--rand_seed", str(seed), "--save_dir", str(tmp_path / name),
                   "--config_path", str(tiny_config(tmp_path, algorithm))]
    return cli.run(algorithm, argv)


def final_state(tmp_path: Path, name: str = "run", seed: int = 5) -> dict:
    return load_checkpoint(tmp_path / name / "checkpoint" / f"seed-{seed}-basic.pth")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_tiny_search_writes_the_outputs_with_the_selected_genotype(tmp_path, algorithm):
    summary = search(tmp_path, algorithm)
    run_dir = tmp_path / "run"
    log = (run_dir / "seed-5-log.txt").read_text()
    assert log.count("genotype:") >= 2 and log.count(f"{algorithm}: ") >= 2 and "selection_acc" in log
    assert list(run_dir.rglob("events.out.tfevents.*"))
    written = json.loads((run_dir / "seed-5-summary.json").read_text())
    history = written["history"]
    assert len(history) == 2 and written["search"]["final_genotype"] == history[-1]["genotype"] == summary["search"]["final_genotype"]
    candidates = [entry["algorithm"]["selection_candidates"] for entry in history]
    assert candidates == ([2, 4] if algorithm == "ENAS" else [3, 3])  # ENAS: more samples for the final choice
    state = final_state(tmp_path)
    assert state["finished"] and state["genotype"] == history[-1]["genotype_dict"]
    assert set(state["mixer"]) == {"seed", "generator"}
    if algorithm == "ENAS":
        assert {"controller_loss", "controller_acc", "controller_baseline"} <= set(history[0]["algorithm"])
        assert state["controller_baseline"]["value"] == history[-1]["algorithm"]["controller_baseline"]
        assert "w_lstm.weight_ih_l0" in state["controller"]
        # The architecture optimizer is the controller's Adam with the config's betas and eps.
        group = state["a_optimizer"]["param_groups"][0]
        # 12 tensors: the input, 2 x 4 of the LSTM, the embedding, 2 of the linear layer
        assert group["betas"] == (0.0, 0.999) and group["eps"] == 0.001 and len(group["params"]) == 12


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_candidates_are_scored_with_the_originals_transform(tmp_path, monkeypatch, algorithm):
    """SETN and RSPS score on the test transform, ENAS on the training augmentation (as the original's scripts)."""
    from xautodl.datasets import SearchLoader
    scored_with = []
    original = SearchLoader.valid_batches

    def spy(self, epoch, cycle, augmented):
        scored_with.append((cycle // PHASE_PASSES, augmented))  # (phase, augmented); phase 2 is the selection
        return original(self, epoch, cycle, augmented)

    monkeypatch.setattr(SearchLoader, "valid_batches", spy)
    search(tmp_path, algorithm, epochs=1)
    selection = {augmented for phase, augmented in scored_with if phase == 2}
    assert selection == {algorithm == "ENAS"}
    assert all(augmented for phase, augmented in scored_with if phase != 2)


def test_enas_resumes_exactly(tmp_path, monkeypatch):
    straight = search(tmp_path, "ENAS", "straight", epochs=3)
    real_run_epoch = crash_at_epoch(monkeypatch, SearchLoop, "run_epoch", 2)
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path, "ENAS", "resumed", epochs=3)
    assert final_state(tmp_path, "resumed")["epoch"] == 1
    monkeypatch.setattr(SearchLoop, "run_epoch", real_run_epoch)
    resumed = search(tmp_path, "ENAS", "resumed", epochs=3)
    for key in ("genotype", "valid_loss", "train_loss", "algorithm"):
        assert [h[key] for h in resumed["history"]] == [h[key] for h in straight["history"]]
    a, b = final_state(tmp_path, "straight"), final_state(tmp_path, "resumed")
    for key in ("model", "controller"):
        assert all(torch.equal(a[key][name], b[key][name]) for name in a[key])
    assert torch.equal(a["mixer"]["generator"], b["mixer"]["generator"])


def test_the_weight_sharing_algorithms_refuse_the_nasnet_space():
    for algorithm in ALGORITHMS:
        with pytest.raises(ConfigError, match="nas-bench-201 space only"):
            cli.parse_args(algorithm, ["--dataset", "cifar10", "--search_space_name", "darts"])


def test_enas_config_cosine_has_the_originals_ten_epoch_half_period():
    config = load_config(REPO / "configs" / "nas-benchmark" / "algos" / "ENAS.config")
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=float(config.LR))
    schedule = schedule_from_config(optimizer, config)
    assert schedule.total_epochs == 250
    assert [schedule.set_position(epoch) for epoch in (0, 10, 20)] == pytest.approx([0.05, 0.0005, 0.05])
    assert schedule.settings()["schedule.t_max"] == 10


def build(name: str, config: dict | None = None, seed: int = 0):
    model = tiny_supernet(ArchMixer(seed=seed))
    w_optimizer = torch.optim.SGD(model.weights(), lr=0.1)
    a_optimizer = torch.optim.Adam(model.alphas(), lr=1e-3)
    return build_algorithm(name, model, F.cross_entropy, w_optimizer, a_optimizer, config=config)


def endless(seed: int = 0):
    while True:
        yield batch(seed)
        seed += 1


def test_the_selection_keeps_the_best_scoring_candidate():
    algorithm = build("RANDOM-NAS")
    candidates = [[0] * 6, [1] * 6, [2] * 6, [3] * 6]
    correct = {0: 1.0, 1: 3.0, 2: 3.0, 3: 2.0}  # out of 4: two best, equal; the first of them wins
    algorithm.top1_counts = lambda arch, x, y: torch.tensor([correct[arch[0]], 4.0], dtype=torch.float64)
    genotype, metrics = algorithm.best_of(candidates, endless())
    assert genotype == algorithm.genotype_of([1] * 6)
    assert metrics == {"selection_acc": 75.0, "selection_candidates": 4}


def test_a_candidate_is_scored_on_the_configs_test_batch_size():
    algorithm = build("SETN", {"test_batch_size": 14})
    drawn = []
    algorithm.top1_counts = lambda arch, x, y: drawn.append(len(y)) or torch.tensor([1.0, float(len(y))])
    assert algorithm.score([0] * 6, endless()).tolist() == [3.0, 18.0]  # batches of 6 until 14 images: 3
    assert drawn == [6, 6, 6]


def test_setn_templates_are_the_most_probable_architectures():
    algorithm = build("SETN")
    with torch.no_grad():
        algorithm.alphas[0].copy_(torch.randn(6, 5, generator=torch.Generator().manual_seed(3)))
    log_p = F.log_softmax(algorithm.alphas[0].detach().double(), dim=-1)
    templates = algorithm.templates(5)
    assert templates[0] == log_p.argmax(dim=-1).tolist()
    scores = [sum(log_p[e, k].item() for e, k in enumerate(arch)) for arch in templates]
    assert scores == sorted(scores, reverse=True) and len(set(map(tuple, templates))) == 5
    assert len(algorithm.templates(0)) == 5 ** 6


def test_a_weight_step_trains_only_the_sampled_ops():
    algorithm = build("RANDOM-NAS")
    before = {name: p.detach().clone() for name, p in algorithm.model.named_parameters()}
    algorithm.weight_step(*batch(0))
    arch = algorithm.mixer.arch
    cell = algorithm.model.cells[0]
    for e, ops in enumerate(cell.edges):
        for k, op in enumerate(ops):
            name = f"cells.0.edges.{e}.{k}"
            changed = any(not torch.equal(p, before[f"{name}.{n}"]) for n, p in op.named_parameters())
            assert changed == (k == arch[e] and any(True for _ in op.parameters()))


def first_edge_probability(controller, op: int) -> float:
    """The controller's probability of `op` on the first edge (which no earlier choice conditions)."""
    outputs, _ = controller.w_lstm(controller.input_vars)
    logits = controller.tanh_constant * torch.tanh(controller.w_pred(outputs).view(-1) / controller.temperature)
    return F.softmax(logits, dim=-1)[op].item()


def test_the_enas_controller_moves_towards_the_rewarded_op():
    settings = {"controller_train_steps": 5, "controller_num_aggregate": 4, "controller_entropy_weight": 0.0,
                "controller_lr": 0.05}
    algorithm = build("ENAS", settings)
    assert isinstance(algorithm, ENAS)
    rewarded = 2
    algorithm.accuracy = lambda arch, x, y: 1.0 if arch[0] == rewarded else 0.0
    algorithm.baseline.value = 0.5  # between the two rewards: the REINFORCE signal points one way only
    before = first_edge_probability(algorithm.controller, rewarded)
    metrics = algorithm.after_epoch(endless())
    assert first_edge_probability(algorithm.controller, rewarded) > before + 0.05
    assert metrics["controller_baseline"] == algorithm.baseline.value


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_driver_runs_a_tiny_search(tmp_path, algorithm):
    run_dir = tmp_path / "run"
    command = ["bash", str(REPO / "scripts-search" / "algos" / f"{algorithm}.sh"), "digits", "1", "7",
               "--channel", "4", "--num_cells", "1", "--batch_size", "16", "--limit_batches", "2", "--epochs", "1",
               "--device", "cpu", "--quiet", "--no_benchmark", "--save_dir", str(run_dir),
               "--config_path", str(tiny_config(tmp_path, algorithm))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "NPROC": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "seed-7-summary.json").read_text())
    assert summary["search"]["algorithm"] == algorithm and summary["search"]["final_genotype"].startswith("|")


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_two_process_search_keeps_ranks_identical(tmp_path, algorithm):
    """Both processes draw the same architectures and choose the same (a controller or a choice that differed
    would train other ops on each rank, and the weights' checksums would differ)."""
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "exps" / "NAS-Bench-201-algos" / f"{algorithm}.py"), *TINY, "--epochs", "2",
               "--rand_seed", "3", "--save_dir", str(run_dir), "--config_path", str(tiny_config(tmp_path, algorithm))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr[-3000:]
    log = (run_dir / "seed-3-log.txt").read_text()
    checksums = re.search(r"parameter checksums per rank: \[([^\]]*)\]", log).group(1).split(", ")
    assert len(checksums) == 2 and checksums[0] == checksums[1]
    summary = json.loads((run_dir / "seed-3-summary.json").read_text())
    assert len(summary["history"]) == 2 and summary["search"]["final_genotype"].startswith("|")
