"""The epoch skeleton: a non-finite epoch is never saved (its message names the checkpoint a re-run resumes from),
the best checkpoint is written before the last one, and the summary follows the last checkpoint."""
from __future__ import annotations

import json
import math

import pytest
import torch

from run_helpers import (TINY_SEARCH, TWO_STEP_SEARCH, assert_same_search, last_checkpoint, one_error_line,
                         run_main, run_search, search_files)
from xautodl.commands import search as cli
from xautodl.commands import train_a_net
from xautodl.runtime import epochs as epoch_skeleton
from xautodl.runtime import load_checkpoint, previous_path
from xautodl.search import loop as search_loop
from xautodl.search.loop import SearchLoop
from xautodl.train.loop import Trainer


# --------------------------------------------------------------------------------------------------------- saving order
def test_crash_between_the_best_and_the_last_checkpoint_leaves_them_consistent(tmp_path, monkeypatch, references,
                                                                               one_thread):
    argv = TINY_SEARCH + ["--epochs", "3"]
    reference = json.loads(search_files(references["GDAS"])[2].read_text())
    valid = [entry["valid_acc"] for entry in reference["history"]]
    improving = [epoch for epoch in range(1, len(valid)) if valid[epoch] > max(valid[:epoch])]
    assert improving, "the seed must give a new best after the first epoch, so two checkpoints are written"
    epoch = improving[0]
    real_save = epoch_skeleton.save_checkpoint
    written = []

    def die_between_the_two_writes(path, state):
        if state["epoch"] == epoch:
            written.append(path)
            if len(written) == 2:
                raise KeyboardInterrupt
        return real_save(path, state)

    monkeypatch.setattr(epoch_skeleton, "save_checkpoint", die_between_the_two_writes)
    with pytest.raises(KeyboardInterrupt):
        cli.run("GDAS", argv + ["--save_dir", str(tmp_path / "run")])
    monkeypatch.setattr(epoch_skeleton, "save_checkpoint", real_save)
    cli.run("GDAS", argv + ["--save_dir", str(tmp_path / "run")])
    assert_same_search(tmp_path / "run", references["GDAS"], epochs=3)

def test_finished_run_killed_before_its_summary_gets_it_on_rerun(tmp_path, monkeypatch):
    argv = TINY_SEARCH + ["--epochs", "2", "--save_dir", str(tmp_path / "run")]
    real_write = search_loop.write_record

    def die_before_the_last_summary(path, obj):
        if obj["epochs_done"] == 2:
            raise KeyboardInterrupt  # killed after the last checkpoint was written, before the summary
        real_write(path, obj)

    monkeypatch.setattr(search_loop, "write_record", die_before_the_last_summary)
    with pytest.raises(KeyboardInterrupt):
        cli.run("GDAS", argv)
    last, _, summary = search_files(tmp_path / "run")
    assert load_checkpoint(last)["finished"] and json.loads(summary.read_text())["epochs_done"] == 1
    monkeypatch.setattr(search_loop, "write_record", real_write)

    cli.run("GDAS", argv)
    written = json.loads(summary.read_text())
    assert written["epochs_done"] == 2 and written["search"]["final_genotype"] == written["history"][-1]["genotype"]


# ---------------------------------------------------------------------------------------------------- non-finite epochs
def poisoned_criterion(build_criterion, poison: dict):
    """A criterion builder whose losses turn NaN while poison['on'] is set."""
    def build(config):
        criterion = build_criterion(config)

        def loss(logits, targets):
            value = criterion(logits, targets)
            return value * float("nan") if poison["on"] else value

        return loss

    return build

@pytest.mark.parametrize("algorithm, message", [
    ("DARTS-V1", "error: the train loss became nan in epoch 2; the run stopped and saved nothing of that epoch; the "
                 "last good checkpoint, {last} (epoch 1), is kept and a re-run resumes from it. Try a smaller "
                 "learning rate."),
    # GDAS notices earlier: NaN alphas leave nothing to sample from.
    ("GDAS", "error: the architecture parameters (alphas) are no longer finite, so GDAS cannot sample an "
             "architecture; the run stopped and the last good checkpoint is kept. Try a smaller "
             "--arch_learning_rate or learning rate."),
])
def test_nan_loss_stops_the_search_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys, algorithm,
                                                                      message):
    argv = TINY_SEARCH + ["--epochs", "3", "--save_dir", str(tmp_path / "run")]
    last, _, summary = search_files(tmp_path / "run")
    poison, good = {"on": False}, {}
    real_run_epoch = SearchLoop.run_epoch

    def poison_from_second_epoch(self, epoch):
        poison["on"] = epoch >= 1
        if epoch == 1:
            good["bytes"] = last.read_bytes()
        return real_run_epoch(self, epoch)

    monkeypatch.setattr(SearchLoop, "run_epoch", poison_from_second_epoch)
    monkeypatch.setattr(cli, "build_criterion", poisoned_criterion(cli.build_criterion, poison))
    code, err = run_main(monkeypatch, capsys, lambda: cli.main(algorithm), f"{algorithm}.py", argv)

    assert code == 1
    assert err.strip() == message.format(last=last)
    assert last.read_bytes() == good["bytes"]
    state = load_checkpoint(last)
    assert state["epoch"] == 0 and all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    assert json.loads(summary.read_text())["epochs_done"] == 1

def test_nan_loss_stops_train_a_net_and_keeps_the_last_good_checkpoint(tmp_path, cifar_home, monkeypatch, capsys):
    out = tmp_path / "out"
    argv = ["--arch", "resnet", "--channel", "4", "--num_cells", "1", "--datasets", "cifar10", "--seeds", "777",
            "--epochs", "3", "--batch_size", "8", "--limit_batches", "2", "--device", "cpu", "--quiet",
            "--save_dir", str(out)]
    poison = {"on": False}
    real_train_epoch = Trainer.train_epoch

    def poison_from_second_epoch(self, epoch, progress):
        poison["on"] = epoch >= 1
        return real_train_epoch(self, epoch, progress)

    monkeypatch.setattr(Trainer, "train_epoch", poison_from_second_epoch)
    monkeypatch.setattr(train_a_net, "build_criterion", poisoned_criterion(train_a_net.build_criterion, poison))
    code, err = run_main(monkeypatch, capsys, train_a_net.main, "main.py", argv)

    (last,) = (out / "checkpoint").glob("*-cifar10-basic.pth")
    assert code == 1
    assert err.startswith("error: the train loss became nan in epoch 2; the run stopped and saved nothing of that "
                          f"epoch; the last good checkpoint, {last} (epoch 1), is kept")
    state = load_checkpoint(last)
    assert state["epoch"] == 0 and len(state["history"]) == 1
    assert all(math.isfinite(value) for key, value in state["history"][0].items() if key.endswith("_loss"))
    assert not list(out.glob("arch-*-seed-777.json")), "no result is reported for the diverged setting"

def test_a_non_finite_model_with_finite_losses_is_never_saved(tmp_path, monkeypatch, capsys):
    """BN statistics (or weights) that overflow while the epoch's mean loss is still finite: the epoch is not
    saved over the good checkpoint, the message names that checkpoint, and a re-run resumes from it."""
    argv = TINY_SEARCH + ["--epochs", "3", "--save_dir", str(tmp_path / "run")]
    last, best, _ = search_files(tmp_path / "run")
    real_run_epoch = SearchLoop.run_epoch
    kept = {}

    def poison_bn_in_second_epoch(self, epoch):
        metrics = real_run_epoch(self, epoch)
        if epoch == 1:
            kept["last"], kept["best"] = last.read_bytes(), best.read_bytes()
            bn = next(m for m in self.model.modules() if isinstance(m, torch.nn.BatchNorm2d) and m.track_running_stats)
            bn.running_var.fill_(float("inf"))
        return metrics

    monkeypatch.setattr(SearchLoop, "run_epoch", poison_bn_in_second_epoch)
    code, err = run_main(monkeypatch, capsys, lambda: cli.main("GDAS"), "GDAS.py", argv)
    assert code == 1
    assert "running_var (and maybe more of the model) became non-finite in epoch 2 while its losses were finite" in err
    assert f"the last good checkpoint, {last} (epoch 1), is kept and a re-run resumes from it" in err
    assert last.read_bytes() == kept["last"] and best.read_bytes() == kept["best"]
    monkeypatch.setattr(SearchLoop, "run_epoch", real_run_epoch)
    summary = cli.run("GDAS", argv)
    assert len(summary["history"]) == 3 and all(math.isfinite(h["valid_loss"]) for h in summary["history"])

def _nan_in_epoch(monkeypatch, bad_epoch: int) -> None:
    from xautodl.search.loop import SearchLoop

    real_run_epoch = SearchLoop.run_epoch

    def run_epoch(self, epoch):
        metrics = real_run_epoch(self, epoch)
        return {**metrics, "train_loss": float("nan")} if epoch == bad_epoch else metrics

    monkeypatch.setattr(SearchLoop, "run_epoch", run_epoch)

def test_a_run_that_stops_in_its_first_epoch_claims_no_checkpoint(tmp_path, monkeypatch, capsys, one_thread):
    _nan_in_epoch(monkeypatch, 0)
    run_dir = tmp_path / "run"
    code, err = run_search(monkeypatch, capsys, [*TWO_STEP_SEARCH, "--epochs", "2", "--save_dir", str(run_dir)])
    line = one_error_line(err)
    assert code == 1 and "the train loss became nan in epoch 1" in line
    assert "there is no good checkpoint yet (this was the run's first epoch)" in line and "is kept" not in line
    assert not last_checkpoint(run_dir).exists()

def test_after_resuming_from_prev_the_message_names_prev(run_copy, monkeypatch, capsys, one_thread):
    """The damaged last checkpoint was moved aside, so the good one a re-run resumes from is `.prev`."""
    last = last_checkpoint(run_copy)
    last.write_bytes(b"damaged")
    _nan_in_epoch(monkeypatch, 1)
    code, err = run_search(monkeypatch, capsys, [*TWO_STEP_SEARCH, "--epochs", "3", "--save_dir", str(run_copy)])
    line = one_error_line(err)
    assert code == 1 and not last.exists()
    assert f"the last good checkpoint, {previous_path(last)} (epoch 1), is kept and a re-run resumes from it" in line
    assert load_checkpoint(previous_path(last))["epoch"] == 0
