"""Helpers of the tests that run the real commands on tiny data: the tiny search's command line, a run's files,
running an entry point as a user would, and comparing two runs bit for bit."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import sklearn.datasets  # noqa: F401  its first import draws from Python's `random`: before any run, not in one
import torch

from xautodl.runtime import load_checkpoint

SEED = 5
# A tiny GDAS search on the bundled digits: 3 steps per epoch.
TINY_SEARCH = ["--dataset", "digits", "--channel", "4", "--num_cells", "1", "--batch_size", "16", "--limit_batches", "3",
               "--device", "cpu", "--quiet", "--no_benchmark", "--rand_seed", str(SEED)]
# The same with 2 steps per epoch (the shared finished run that tests copy and damage: `run_copy`).
TWO_STEP_SEARCH = [*TINY_SEARCH[:TINY_SEARCH.index("--limit_batches") + 1], "2",
                   *TINY_SEARCH[TINY_SEARCH.index("--limit_batches") + 2:]]


def search_files(run_dir: Path) -> tuple[Path, Path, Path]:
    """(last checkpoint, best checkpoint, summary) of the SEED run in `run_dir`."""
    return (run_dir / "checkpoint" / f"seed-{SEED}-basic.pth", run_dir / "checkpoint" / f"seed-{SEED}-best.pth",
            run_dir / f"seed-{SEED}-summary.json")


def last_checkpoint(run_dir: Path) -> Path:
    return search_files(run_dir)[0]


def mid_epoch_file(run_dir: Path, stem: str = f"seed-{SEED}") -> Path:
    return run_dir / "checkpoint" / f"{stem}-mid-epoch.pth"


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` but the log, by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith("-log.txt")}


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def run_main(monkeypatch, capsys, entry, prog: str, argv: list[str]) -> tuple[int, str]:
    """Run an entry point's main() with `argv` as its command line; returns (exit status, stderr)."""
    monkeypatch.setattr(sys, "argv", [prog, *argv])
    with pytest.raises(SystemExit) as exit_info:
        entry()
    return exit_info.value.code, capsys.readouterr().err


def run_search(monkeypatch, capsys, argv: list[str], algorithm: str = "GDAS") -> tuple[int, str]:
    """The search entry point's main() with `argv`; (exit status, stderr)."""
    from xautodl.commands import search as cli

    return run_main(monkeypatch, capsys, lambda: cli.main(algorithm), f"{algorithm}.py", argv)


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def train_a_net_argv(save_dir: Path, epochs: int = 3) -> list[str]:
    """A tiny train-a-net run of the ResNet cell on cifar10, seed 777, 3 steps per epoch."""
    return ["--arch", "resnet", "--channel", "4", "--num_cells", "1", "--datasets", "cifar10", "--seeds", "777",
            "--epochs", str(epochs), "--batch_size", "8", "--limit_batches", "3", "--device", "cpu", "--quiet",
            "--save_dir", str(save_dir)]


def basic_main_argv(model_config: Path, save_dir: Path) -> list[str]:
    """A tiny 3-epoch basic-main run on cifar10 with the NASNet network of `model_config`, seed 3, 3 steps per epoch."""
    return ["--dataset", "cifar10", "--model_config", str(model_config), "--optim_config",
            "configs/opts/NAS-CIFAR.config", "--save_dir", str(save_dir), "--rand_seed", "3", "--epochs", "3",
            "--warmup", "0", "--batch_size", "8", "--limit_batches", "3", "--device", "cpu", "--quiet"]


def assert_same(ours, theirs, where: str = "state") -> None:
    """Nested dicts/lists equal, tensors bit for bit."""
    if isinstance(theirs, torch.Tensor):
        assert torch.equal(ours, theirs), f"{where} differs"
    elif isinstance(theirs, dict):
        assert set(ours) == set(theirs), f"{where} keys differ"
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{where}[{key!r}]")
    elif isinstance(theirs, (list, tuple)):
        assert len(ours) == len(theirs), f"{where} lengths differ"
        for index, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{where}[{index}]")
    else:
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"


def without_timings(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in entry.items() if not k.endswith("seconds")} for entry in history]


def assert_same_search(run_dir: Path, reference: Path, epochs: int) -> None:
    """Same genotypes, losses, accuracies, alphas; same final weights, optimiser and sampler states; same best."""
    (last, best, summary), (ref_last, ref_best, ref_summary) = search_files(run_dir), search_files(reference)
    ours, theirs = json.loads(summary.read_text()), json.loads(ref_summary.read_text())
    assert ours["epochs_done"] == theirs["epochs_done"] == epochs
    assert [h["genotype"] for h in ours["history"]] == [h["genotype"] for h in theirs["history"]]
    assert without_timings(ours["history"]) == without_timings(theirs["history"])
    assert ours["best"] == theirs["best"]
    final, ref_final = load_checkpoint(last), load_checkpoint(ref_last)
    for key in ("epoch", "model", "w_optimizer", "a_optimizer", "mixer", "rng"):
        assert_same(final[key], ref_final[key], key)
    best_state, ref_best_state = load_checkpoint(best), load_checkpoint(ref_best)
    assert best_state["epoch"] == ours["best"]["epoch"]
    assert_same(best_state["model"], ref_best_state["model"], "best model")
