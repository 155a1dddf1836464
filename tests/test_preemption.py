"""Preemption without losing an epoch: a SIGTERM (SLURM's preemption signal) or SIGHUP stops a run at its next step
boundary, saved, with one line and status 75; the re-run resumes at that step and ends exactly like an
uninterrupted run (CPU, fixed seed, one thread): data order, augmentation, Gumbel samples, meters and history.

The signals are real: the run sends them to itself from an optimizer-step hook at a chosen step, so that they
arrive in the middle of a step, as a scheduler's would.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from run_helpers import (SEED, TINY_SEARCH, assert_same, assert_same_search, basic_main_argv, mid_epoch_file,
                         search_files, train_a_net_argv, without_timings)
from xautodl.commands import search as cli
from xautodl.commands import basic_main, train_a_net
from xautodl.runtime import checkpoint as checkpoint_module
from xautodl.runtime import load_checkpoint, previous_path, save_checkpoint
from xautodl.runtime.signals import EXIT_PREEMPTED
from xautodl.spaces.nas201 import enumerate_archs, parse_arch


EPOCHS = 3

STEPS = 3  # TINY_SEARCH's --limit_batches

SEARCH_ARGV = TINY_SEARCH + ["--epochs", str(EPOCHS)]

class SignalAtSteps:
    """Send this process `signum` right after its SGD steps number `steps` (1-based, counted over the run)."""

    def __init__(self, *steps: int, signum: int = signal.SIGTERM) -> None:
        self.steps, self.signum, self.done = set(steps), signum, 0

    def __enter__(self) -> "SignalAtSteps":
        def hook(optimizer, args, kwargs):
            if isinstance(optimizer, torch.optim.SGD):
                self.done += 1
                if self.done in self.steps:
                    os.kill(os.getpid(), self.signum)

        self.handle = register_optimizer_step_post_hook(hook)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()

def run_entry(monkeypatch, capsys, entry, argv: list[str], prog: str = "GDAS.py") -> tuple[int, str]:
    """An entry point's main() (its real signal handling) with `argv`; (exit status, stderr lines)."""
    monkeypatch.setattr(sys, "argv", [prog, *argv])
    try:
        entry()
        status = 0
    except SystemExit as ended:
        status = ended.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return status, err.strip().splitlines()

def search(monkeypatch, capsys, run_dir: Path, *signal_steps: int, algorithm: str = "GDAS",
           signum: int = signal.SIGTERM) -> tuple[int, list[str]]:
    with SignalAtSteps(*signal_steps, signum=signum):
        return run_entry(monkeypatch, capsys, lambda: cli.main(algorithm),
                         SEARCH_ARGV + ["--save_dir", str(run_dir)], prog=f"{algorithm}.py")


# -------------------------------------------------------------------------------------------------- the search, exactly
@pytest.mark.parametrize("algorithm, signal_step, signame", [
    ("GDAS", 1, "SIGTERM"),      # the first step of the run: no complete epoch yet
    ("GDAS", 5, "SIGTERM"),      # the middle of epoch 2
    ("GDAS", 8, "SIGHUP"),       # the last epoch, a closed terminal
    ("DARTS-V2", 4, "SIGTERM"),  # the unrolled architecture step, right after an epoch boundary
])
def test_a_search_stopped_mid_epoch_resumes_at_that_step_and_ends_like_an_uninterrupted_run(
        tmp_path, monkeypatch, capsys, references, one_thread, algorithm, signal_step, signame):
    run_dir = tmp_path / "run"
    last, _, summary = search_files(run_dir)
    epoch, step = divmod(signal_step - 1, STEPS)  # the step in which the signal arrives (0-based epoch)
    status, err = search(monkeypatch, capsys, run_dir, signal_step, algorithm=algorithm,
                         signum=getattr(signal, signame))

    mid = mid_epoch_file(run_dir)
    assert status == EXIT_PREEMPTED == 75
    assert err == [f"stopped by {signame} after step {step + 1} of {STEPS} of epoch {epoch + 1}/{EPOCHS}, saved in "
                   f"{mid}; re-running the same command resumes at step {step + 2}"]
    state = load_checkpoint(mid)
    assert state["epoch"] == epoch and state["mid_epoch"]["step"] == step + 1 and not state["finished"]
    assert len(state["history"]) == epoch
    assert last.exists() == (epoch > 0) and (not last.exists() or load_checkpoint(last)["epoch"] == epoch - 1)
    assert not list(mid.parent.glob(".*.tmp"))

    status, _ = search(monkeypatch, capsys, run_dir, algorithm=algorithm)
    assert status == 0
    log = (run_dir / f"seed-{SEED}-log.txt").read_text()
    assert f"resumed from {mid} in epoch {epoch + 1} after step {step + 1} of {STEPS}" in log
    assert not mid.exists() and not previous_path(mid).exists(), "the finished epoch supersedes the mid-epoch file"
    assert_same_search(run_dir, references[algorithm], EPOCHS)
    assert summary.exists()

def test_two_stops_in_one_epoch_and_one_at_its_end_still_end_like_an_uninterrupted_run(
        tmp_path, monkeypatch, capsys, references, one_thread):
    run_dir = tmp_path / "run"
    last, _, _ = search_files(run_dir)
    status, err = search(monkeypatch, capsys, run_dir, 4)  # after step 1 of epoch 2
    assert status == 75 and "after step 1 of 3 of epoch 2/3" in err[0]
    status, err = search(monkeypatch, capsys, run_dir, 1)  # the re-run's first step: step 2 of epoch 2
    assert status == 75 and "after step 2 of 3 of epoch 2/3" in err[0]
    assert load_checkpoint(previous_path(mid_epoch_file(run_dir)))["mid_epoch"]["step"] == 1
    # This re-run's first step is the last of epoch 2: the epoch is finished and saved, the run stops after it.
    status, err = search(monkeypatch, capsys, run_dir, 1)
    assert status == 75
    assert err == [f"stopped by SIGTERM after epoch 2/3, saved in {last}; re-running the same command resumes "
                   f"with epoch 3"]
    assert load_checkpoint(last)["epoch"] == 1 and not mid_epoch_file(run_dir).exists()
    assert search(monkeypatch, capsys, run_dir)[0] == 0
    assert_same_search(run_dir, references["GDAS"], EPOCHS)

def test_a_signal_during_a_checkpoint_write_stops_the_run_right_after_it(tmp_path, monkeypatch, capsys, references,
                                                                         one_thread):
    """The write holds the signal back (no temporary file is left) and hands it to the loop, which stops before
    the next epoch."""
    run_dir = tmp_path / "run"
    last, _, _ = search_files(run_dir)
    real_write = checkpoint_module._write_verified_temporary

    def write_and_signal(target, payload):
        written = real_write(target, payload)
        if target == last and payload["epoch"] == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        return written

    monkeypatch.setattr(checkpoint_module, "_write_verified_temporary", write_and_signal)
    status, err = search(monkeypatch, capsys, run_dir)
    assert status == 75 and err[0].startswith("stopped by SIGTERM after epoch 1/3, saved in")
    assert load_checkpoint(last)["epoch"] == 0 and not list(last.parent.glob(".*.tmp"))
    monkeypatch.setattr(checkpoint_module, "_write_verified_temporary", real_write)
    assert search(monkeypatch, capsys, run_dir)[0] == 0
    assert_same_search(run_dir, references["GDAS"], EPOCHS)

def test_a_second_signal_stops_at_once_and_the_run_still_resumes(tmp_path, monkeypatch, capsys, references,
                                                                 one_thread):
    """A step that would not end within the scheduler's grace period: the second signal ends the run where it is;
    the last complete epoch is the run's state."""
    run_dir = tmp_path / "run"
    last, _, _ = search_files(run_dir)

    class TwoSignals(SignalAtSteps):
        def __enter__(self):
            def hook(optimizer, args, kwargs):
                if isinstance(optimizer, torch.optim.SGD):
                    self.done += 1
                    if self.done == 5:
                        os.kill(os.getpid(), signal.SIGTERM)
                        os.kill(os.getpid(), signal.SIGTERM)

            self.handle = register_optimizer_step_post_hook(hook)
            return self

    with TwoSignals():
        status, err = run_entry(monkeypatch, capsys, lambda: cli.main("GDAS"),
                                SEARCH_ARGV + ["--save_dir", str(run_dir)])
    assert status == 128 + signal.SIGTERM
    assert err == ["terminated by SIGTERM; the run's last complete epoch is kept and re-running the command "
                   "resumes it"]
    assert load_checkpoint(last)["epoch"] == 0 and not mid_epoch_file(run_dir).exists()
    assert search(monkeypatch, capsys, run_dir)[0] == 0
    assert_same_search(run_dir, references["GDAS"], EPOCHS)

def test_a_signal_in_the_last_step_of_the_run_ends_it_finished(tmp_path, monkeypatch, capsys, one_thread):
    """No step is left to stop after: the run saves its last epoch as usual, then the signal ends it."""
    run_dir = tmp_path / "run"
    last, _, summary = search_files(run_dir)
    status, err = search(monkeypatch, capsys, run_dir, EPOCHS * STEPS)
    assert status == 128 + signal.SIGTERM and err[0].startswith("terminated by SIGTERM")
    assert load_checkpoint(last)["finished"] and json.loads(summary.read_text())["epochs_done"] == EPOCHS


# ----------------------------------------------------------------------------------- a mid-epoch file that cannot serve
def _preempted_run(tmp_path, monkeypatch, capsys) -> Path:
    run_dir = tmp_path / "run"
    assert search(monkeypatch, capsys, run_dir, 5)[0] == 75  # after step 2 of epoch 2
    return run_dir

def test_a_re_run_with_other_steps_per_epoch_starts_the_epoch_again(tmp_path, monkeypatch, capsys, one_thread):
    run_dir = _preempted_run(tmp_path, monkeypatch, capsys)
    argv = [*SEARCH_ARGV, "--save_dir", str(run_dir)]
    argv[argv.index("--limit_batches") + 1] = "2"
    status, _ = run_entry(monkeypatch, capsys, lambda: cli.main("GDAS"), argv)
    assert status == 0
    log = (run_dir / f"seed-{SEED}-log.txt").read_text()
    assert (f"not resuming from the mid-epoch checkpoint {mid_epoch_file(run_dir)}: it stopped after step 2 of 3 "
            f"steps per epoch, and this command runs 2 (another --limit_batches or dataset); epoch 2 starts again "
            f"from its first step") in log
    assert not mid_epoch_file(run_dir).exists()

def test_a_damaged_mid_epoch_file_is_set_aside_and_the_epoch_starts_again(tmp_path, monkeypatch, capsys,
                                                                          references, one_thread):
    run_dir = _preempted_run(tmp_path, monkeypatch, capsys)
    mid = mid_epoch_file(run_dir)
    data = mid.read_bytes()
    mid.write_bytes(data[: len(data) // 2])
    assert search(monkeypatch, capsys, run_dir)[0] == 0
    log = (run_dir / f"seed-{SEED}-log.txt").read_text()
    assert "warning: the mid-epoch checkpoint cannot be used" in log and "epoch 2 starts again" in log
    # Epoch 2 computed again from its start: the same run as an uninterrupted one.
    assert_same_search(run_dir, references["GDAS"], EPOCHS)

def test_a_mid_epoch_file_with_fields_this_tool_never_writes_is_not_used(tmp_path, monkeypatch, capsys, one_thread):
    run_dir = _preempted_run(tmp_path, monkeypatch, capsys)
    mid = mid_epoch_file(run_dir)
    state = load_checkpoint(mid)
    state["mid_epoch"]["step"] = 7
    save_checkpoint(mid, state)
    previous_path(mid).unlink()
    assert search(monkeypatch, capsys, run_dir)[0] == 0
    log = (run_dir / f"seed-{SEED}-log.txt").read_text()
    assert "it says it stopped after step 7 of 3" in log and "epoch 2 starts again from its first step" in log

def test_a_stale_mid_epoch_file_is_ignored(tmp_path, monkeypatch, capsys, references, one_thread):
    """A crash between an epoch's checkpoint and the removal of its mid-epoch file leaves an older one behind."""
    run_dir = _preempted_run(tmp_path, monkeypatch, capsys)
    mid = mid_epoch_file(run_dir)
    stale = mid.read_bytes()
    assert search(monkeypatch, capsys, run_dir, 3)[0] == 75  # finishes epoch 2, stops in epoch 3
    mid.write_bytes(stale)
    previous_path(mid).unlink(missing_ok=True)
    assert search(monkeypatch, capsys, run_dir)[0] == 0
    log = (run_dir / f"seed-{SEED}-log.txt").read_text()
    assert "it holds part of epoch 2, and the last complete epoch is 2" in log

def test_another_settings_mid_epoch_checkpoint_is_refused_like_the_last_one(tmp_path, monkeypatch, capsys,
                                                                            one_thread):
    run_dir = _preempted_run(tmp_path, monkeypatch, capsys)
    before = mid_epoch_file(run_dir).read_bytes()
    status, err = run_entry(monkeypatch, capsys, lambda: cli.main("GDAS"),
                            [*SEARCH_ARGV, "--save_dir", str(run_dir), "--arch_learning_rate", "0.01"])
    assert status == 1 and "a_optimizer.lr 0.0003 (checkpoint) vs 0.01 (this command)" in err[0]
    assert mid_epoch_file(run_dir).read_bytes() == before


# ---------------------------------------------------------------------------------------------------- the training loop
def test_train_a_net_stopped_mid_epoch_ends_like_an_uninterrupted_run(tmp_path, cifar_home, monkeypatch, capsys,
                                                                      one_thread):
    argv = train_a_net_argv
    train_a_net.run(argv(tmp_path / "reference"))
    name = f"arch-{enumerate_archs().index(parse_arch('resnet')):05d}-seed-777"
    out = tmp_path / "stopped"
    with SignalAtSteps(5):
        status, err = run_entry(monkeypatch, capsys, train_a_net.main, argv(out), prog="main.py")
    mid = out / "checkpoint" / f"{name}-cifar10-mid-epoch.pth"
    assert status == 75 and err == [f"stopped by SIGTERM after step 2 of 3 of epoch 2/3, saved in {mid}; "
                                    f"re-running the same command resumes at step 3"]
    assert run_entry(monkeypatch, capsys, train_a_net.main, argv(out), prog="main.py")[0] == 0

    ours = json.loads((out / f"{name}.json").read_text())["train_a_net"]["datasets"]["cifar10"]
    theirs = json.loads((tmp_path / "reference" / f"{name}.json").read_text())["train_a_net"]["datasets"]["cifar10"]
    assert without_timings(ours["epochs"]) == without_timings(theirs["epochs"])
    last = out / "checkpoint" / f"{name}-cifar10-basic.pth"
    final, reference = load_checkpoint(last), load_checkpoint(tmp_path / "reference" / "checkpoint" / last.name)
    for key in ("epoch", "model", "optimizer", "rng", "best"):
        assert_same(final[key], reference[key], key)

def test_basic_main_stopped_mid_epoch_ends_like_an_uninterrupted_run(tmp_path, cifar_home, monkeypatch, capsys,
                                                                     one_thread):
    """The NASNet network: auxiliary head and drop-path, which draws from the global RNG in every step."""
    from test_basic_main import arch_config

    model_config = arch_config(tmp_path / "gdas.config", "GDAS_V1", 8)

    def argv(save_dir: Path) -> list[str]:
        return basic_main_argv(model_config, save_dir)

    basic_main.run(argv(tmp_path / "reference"))
    out = tmp_path / "stopped"
    with SignalAtSteps(5):
        status, _ = run_entry(monkeypatch, capsys, basic_main.main, argv(out), prog="basic-main.py")
    assert status == 75 and mid_epoch_file(out, "seed-3").exists()
    assert run_entry(monkeypatch, capsys, basic_main.main, argv(out), prog="basic-main.py")[0] == 0
    final = load_checkpoint(out / "checkpoint" / "seed-3-basic.pth")
    reference = load_checkpoint(tmp_path / "reference" / "checkpoint" / "seed-3-basic.pth")
    assert without_timings(final["history"]) == without_timings(reference["history"])
    for key in ("epoch", "model", "optimizer", "rng", "best"):
        assert_same(final[key], reference[key], key)

@pytest.mark.parametrize("workers", [0, 1])
def test_an_imagenet_folder_run_stopped_mid_epoch_ends_like_an_uninterrupted_run(tmp_path, monkeypatch, capsys,
                                                                                 one_thread, workers):
    """ImageNet-1k reads files through a DataLoader: with workers its augmentation draws from the workers' seeds,
    without them from the global RNG, which the resumed epoch gets back only after its done steps are redrawn."""
    from fakedata import write_image_folder
    from test_basic_main import arch_config

    root = write_image_folder(tmp_path / "ILSVRC2012", classes=3, per_class=4, size=24)
    config = arch_config(tmp_path / "imagenet.config", "GDAS_V1", 8, kind="imagenet")

    def argv(save_dir: Path) -> list[str]:
        return ["--dataset", "imagenet-1k", "--data_path", str(root), "--model_config", str(config), "--save_dir",
                str(save_dir), "--rand_seed", "1", "--epochs", "2", "--warmup", "0", "--batch_size", "2",
                "--limit_batches", "3", "--workers", str(workers), "--device", "cpu", "--quiet"]

    basic_main.run(argv(tmp_path / "reference"))
    out = tmp_path / "stopped"
    with SignalAtSteps(5):  # step 2 of epoch 2
        status, err = run_entry(monkeypatch, capsys, basic_main.main, argv(out), prog="basic-main.py")
    assert status == 75 and "after step 2 of 3 of epoch 2/2" in err[0]
    assert run_entry(monkeypatch, capsys, basic_main.main, argv(out), prog="basic-main.py")[0] == 0
    final = load_checkpoint(out / "checkpoint" / "seed-1-basic.pth")
    reference = load_checkpoint(tmp_path / "reference" / "checkpoint" / "seed-1-basic.pth")
    assert without_timings(final["history"]) == without_timings(reference["history"])
    for key in ("model", "optimizer", "rng"):
        assert_same(final[key], reference[key], key)

def test_fp16_loss_scale_is_checkpointed_so_a_preempted_run_goes_on_with_it(tmp_path, monkeypatch, one_thread):
    """With --amp fp16 the loss scale adapts during training (it halves on every overflow); a resumed run that
    started again at 65536 would skip steps the uninterrupted run took. CPU autocast stands in for a GPU here."""
    from xautodl.optim.schedules import CosineWithWarmup
    from xautodl.runtime import RunLogger
    from xautodl.runtime.run_record import RunFiles
    from xautodl.runtime.signals import Preempted
    from xautodl.train.loop import Trainer, TrainSettings

    def trainer(run_dir: Path) -> Trainer:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        generator = torch.Generator().manual_seed(1)
        batches = [(torch.randn(4, 3, 2, 2, generator=generator) * 3, torch.randint(0, 3, (4,), generator=generator))
                   for _ in range(4)]
        settings = TrainSettings(total_epochs=2, progress=False, print_freq=0, amp="fp16")
        return Trainer(model, batches, {"test": batches[:1]}, optimizer, CosineWithWarmup(optimizer, 2),
                       torch.nn.CrossEntropyLoss(), settings, RunFiles(run_dir, "seed-0"),
                       {"seed": 0}, RunLogger(run_dir, "log.txt", tensorboard=False))

    reference = trainer(tmp_path / "reference")
    reference.fit()
    # The gradients times the first scales overflow fp16: those steps are skipped and the scale halves each time.
    assert reference.scaler.get_scale() < 65536.0
    real_step, calls = Trainer._backward_and_step, []

    def signalling_step(self, loss):  # every training step, taken or skipped for an overflow
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        real_step(self, loss)

    monkeypatch.setattr(Trainer, "_backward_and_step", signalling_step)
    with pytest.raises(Preempted, match="after step 2 of 4 of epoch 1/2"):
        trainer(tmp_path / "run").fit()
    monkeypatch.setattr(Trainer, "_backward_and_step", real_step)
    resumed = trainer(tmp_path / "run")
    resumed.fit()
    final = load_checkpoint(tmp_path / "run" / "checkpoint" / "seed-0-basic.pth")
    expected = load_checkpoint(tmp_path / "reference" / "checkpoint" / "seed-0-basic.pth")
    for key in ("model", "optimizer"):  # a scale back at 65536 would skip the resumed run's first step
        assert_same(final[key], expected[key], key)
    assert final["scaler"] == expected["scaler"]
