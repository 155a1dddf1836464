"""Nothing finished is lost: SIGKILL at any moment, damaged checkpoints and NaN losses.

The kill tests run the real entry scripts (exps/...) in separate processes that get SIGKILLed, either by themselves
at a chosen moment (e.g. between writing a checkpoint's temporary file and renaming it) or from here; re-running
the same command must then resume from the last complete epoch and end exactly where an uninterrupted run ends
(CPU, fixed seed, one thread). Importing torch and xautodl takes most of a short run on a small machine, so one
launcher process imports them once and forks a fresh process for every run; the test hooks live in that launcher
(written to a temporary folder), never in xautodl.
"""
from __future__ import annotations

import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import fakedata
from conftest import REPO
from xautodl.runtime import load_checkpoint, load_resume_checkpoint, previous_path
from xautodl.commands import search as cli
from xautodl.runtime import epochs as epoch_skeleton
from xautodl.search import loop as search_loop
from xautodl.search.loop import SearchLoop
from xautodl.spaces.nas201 import enumerate_archs, parse_arch
from xautodl.commands import basic_main, train_a_net
from xautodl.train.loop import Trainer

SEARCH_SCRIPT = REPO / "exps" / "NAS-Bench-201-algos" / "GDAS.py"
TRAIN_SCRIPT = REPO / "exps" / "NAS-Bench-201" / "main.py"
BASIC_SCRIPT = REPO / "exps" / "basic" / "basic-main.py"
TIMEOUT_S = 300
SEED = 5
TINY_SEARCH = ["--dataset", "digits", "--channel", "4", "--num_cells", "1", "--batch_size", "16", "--limit_batches", "3",
               "--device", "cpu", "--quiet", "--no_benchmark", "--rand_seed", str(SEED)]

LAUNCHER = Path(__file__).resolve().parent / "crash_launcher.py"


# ------------------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def launcher():
    """The launcher process (tests/crash_launcher.py) and a queue of the lines it prints."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    process = subprocess.Popen([sys.executable, str(LAUNCHER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    yield process, lines
    process.stdin.close()
    try:
        process.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def cifar_home(tmp_path, monkeypatch) -> Path:
    """A tiny CIFAR-10 in a TORCH_HOME of its own, where the entry points look for it."""
    home = tmp_path / "torch_home"
    fakedata.write_cifar10(home / "cifar.python", n_train=32, n_test=16)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


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




class Stages:
    """Runs one command again and again, each time in a fresh process and with another crash point."""

    def __init__(self, launcher, folder: Path, script: Path, argv: list[str], log: Path, env: dict | None = None):
        self.process, self.lines = launcher
        self.folder, self.script, self.argv, self.log, self.env = folder, script, argv, log, env or {}
        self.count = 0

    @property
    def output(self) -> Path:
        return self.folder / f"stage-{self.count}.out"

    def start(self, crash_at: str = "") -> tuple[int, int]:
        """Start the command; returns its pid and the log's size before it (what it logs comes after)."""
        self.count += 1
        offset = self.log.stat().st_size if self.log.exists() else 0
        request = {"script": str(self.script), "argv": self.argv, "cwd": str(self.folder), "output": str(self.output),
                   "env": dict(self.env, CRASH_AT=crash_at)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._reply("pid"), offset

    def _reply(self, key: str, pid: int | None = None) -> int:
        """The launcher's next reply (`pid` or `exit`); fails when the launcher died or the run hangs."""
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                return json.loads(self.lines.get(timeout=1))[key]
            except queue.Empty:
                if self.process.poll() is not None:
                    pytest.fail(f"the launcher exited with {self.process.returncode} (its traceback is above)")
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        pytest.fail(f"stage {self.count} gave no {key} within {TIMEOUT_S}s:\n{self._tail()}")

    def _tail(self) -> str:
        return self.output.read_text()[-3000:] if self.output.exists() else "(no output)"

    def wait(self, pid: int, killed: bool) -> None:
        status = self._reply("exit", pid)
        expected = -signal.SIGKILL if killed else 0
        assert status == expected, f"stage {self.count} exited with {status}:\n{self._tail()}"

    def run(self, crash_at: str = "") -> str:
        """Run to the crash point (or to the end without one); returns what this run logged."""
        pid, offset = self.start(crash_at)
        self.wait(pid, killed=bool(crash_at))
        return self.logged_since(offset)

    def kill_when_logged(self, marker: str, crash_at: str) -> str:
        """Start the command and SIGKILL it from here as soon as its log shows `marker`; returns what it logged.

        `crash_at` must block the run (pause:N) after the marker, so that the kill always finds it running.
        """
        pid, offset = self.start(crash_at)
        deadline = time.monotonic() + TIMEOUT_S
        while marker not in self.logged_since(offset):
            if not self.lines.empty() or time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"stage {self.count} never logged {marker!r}:\n{self._tail()}")
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        self.wait(pid, killed=True)
        return self.logged_since(offset)

    def logged_since(self, offset: int) -> str:
        return self.log.read_bytes()[offset:].decode() if self.log.exists() else ""


def resume_epoch(path: Path) -> int | None:
    """Epochs a re-run would find done: those of the checkpoint it resumes from (None: it starts afresh)."""
    state = load_resume_checkpoint(path)
    return None if state is None else int(state["epoch"]) + 1


def temporaries(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}[~.]*.tmp"))


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


def search_files(run_dir: Path) -> tuple[Path, Path, Path]:
    """(last checkpoint, best checkpoint, summary) of the SEED run in `run_dir`."""
    return (run_dir / "checkpoint" / f"seed-{SEED}-basic.pth", run_dir / "checkpoint" / f"seed-{SEED}-best.pth",
            run_dir / f"seed-{SEED}-summary.json")


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


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def run_main(monkeypatch, capsys, entry, prog: str, argv: list[str]) -> tuple[int, str]:
    """Run an entry point's main() with `argv` as its command line; returns (exit status, stderr)."""
    monkeypatch.setattr(sys, "argv", [prog, *argv])
    with pytest.raises(SystemExit) as exit_info:
        entry()
    return exit_info.value.code, capsys.readouterr().err


# --------------------------------------------------------------------------------------------- kill -9
@pytest.mark.slow
def test_search_killed_anywhere_resumes_and_ends_like_an_uninterrupted_run(tmp_path, launcher, one_thread):
    epochs = 4  # 3 weight steps each
    argv = TINY_SEARCH + ["--epochs", str(epochs)]
    reference = tmp_path / "reference"
    cli.run("GDAS", argv + ["--save_dir", str(reference)])
    run_dir = tmp_path / "killed"
    last, _, summary = search_files(run_dir)
    stages = Stages(launcher, tmp_path, SEARCH_SCRIPT, argv + ["--save_dir", str(run_dir)],
                    run_dir / f"seed-{SEED}-log.txt")

    # Mid-epoch: after the 2nd weight step of epoch 2.
    stages.run(crash_at="step:5")
    assert resume_epoch(last) == 1 and len(json.loads(summary.read_text())["history"]) == 1

    # While writing epoch 2's checkpoint: its temporary file is complete, the rename has not happened.
    logged = stages.run(crash_at=f"temp-written:{last.name}@1")
    assert f"resumed from {last} after epoch 1" in logged
    assert resume_epoch(last) == 1 and load_checkpoint(last)["epoch"] == 0 and len(temporaries(last)) == 1

    # Later in epoch 3's write: the last checkpoint is already kept as .prev, the new one not yet renamed.
    logged = stages.run(crash_at=f"prev-kept:{last.name}@2")
    assert f"resumed from {last} after epoch 1" in logged
    assert load_checkpoint(last)["epoch"] == load_checkpoint(previous_path(last))["epoch"] == 1
    assert len(temporaries(last)) == 1, "the temporary file of the earlier crash was cleaned up"

    # From outside, at whatever moment the process has reached once epoch 3 is logged (at the latest mid-epoch 4).
    logged = stages.kill_when_logged(f"epoch   3/{epochs}", crash_at="pause:5")
    assert f"resumed from {last} after epoch 2" in logged
    done = resume_epoch(last)
    assert done in (2, 3)

    logged = stages.run()
    assert f"resumed from {last} after epoch {done}" in logged and "final genotype:" in logged
    assert not temporaries(last)
    assert_same_search(run_dir, reference, epochs)


@pytest.mark.slow
def test_train_a_net_killed_mid_epoch_and_mid_checkpoint_ends_like_an_uninterrupted_run(tmp_path, cifar_home,
                                                                                        launcher, one_thread):
    epochs = 3
    argv = train_a_net_argv

    train_a_net.run(argv(tmp_path / "reference"))
    arch = f"arch-{enumerate_archs().index(parse_arch('resnet')):05d}"
    name = f"{arch}-seed-777"
    out = tmp_path / "killed"
    last = out / "checkpoint" / f"{name}-cifar10-basic.pth"
    stages = Stages(launcher, tmp_path, TRAIN_SCRIPT, argv(out), out / f"{arch}-log.txt",
                    env={"TORCH_HOME": str(cifar_home)})

    stages.run(crash_at="step:5")  # mid-epoch 2
    assert resume_epoch(last) == 1 and not (out / f"{name}.json").exists()
    logged = stages.run(crash_at=f"temp-written:{last.name}@1")
    assert f"resumed from {last} after epoch 1" in logged and load_checkpoint(last)["epoch"] == 0
    logged = stages.run()
    assert f"resumed from {last} after epoch 1" in logged

    ours = json.loads((out / f"{name}.json").read_text())["train_a_net"]["datasets"]["cifar10"]
    theirs = json.loads((tmp_path / "reference" / f"{name}.json").read_text())["train_a_net"]["datasets"]["cifar10"]
    assert ours["finished"] and len(ours["epochs"]) == epochs
    assert without_timings(ours["epochs"]) == without_timings(theirs["epochs"])
    final, reference = load_checkpoint(last), load_checkpoint(tmp_path / "reference" / "checkpoint" / last.name)
    for key in ("epoch", "model", "optimizer", "rng", "best"):
        assert_same(final[key], reference[key], key)


@pytest.mark.slow
def test_basic_main_killed_mid_epoch_and_mid_checkpoint_ends_like_an_uninterrupted_run(tmp_path, cifar_home,
                                                                                       launcher, one_thread):
    from test_basic_main import arch_config

    model_config = arch_config(tmp_path / "gdas.config", "GDAS_V1", 8)

    def argv(save_dir: Path) -> list[str]:
        return basic_main_argv(model_config, save_dir)

    basic_main.run(argv(tmp_path / "reference"))
    out = tmp_path / "killed"
    last = out / "checkpoint" / "seed-3-basic.pth"
    stages = Stages(launcher, tmp_path, BASIC_SCRIPT, argv(out), out / "seed-3-log.txt",
                    env={"TORCH_HOME": str(cifar_home)})

    stages.run(crash_at="step:5")  # mid-epoch 2
    assert resume_epoch(last) == 1
    logged = stages.run(crash_at=f"temp-written:{last.name}@1")
    assert f"resumed from {last} after epoch 1" in logged and load_checkpoint(last)["epoch"] == 0
    stages.run()

    final = load_checkpoint(last)
    reference = load_checkpoint(tmp_path / "reference" / "checkpoint" / last.name)
    assert final["finished"] and final["epoch"] == 2
    assert without_timings(final["history"]) == without_timings(reference["history"])
    for key in ("epoch", "model", "optimizer", "rng", "best"):
        assert_same(final[key], reference[key], key)


# ------------------------------------------------------------------------------------- damaged checkpoints
def test_truncated_checkpoint_resumes_from_prev_with_a_warning(tmp_path, one_thread):
    argv = TINY_SEARCH + ["--epochs", "2"]
    cli.run("GDAS", argv + ["--save_dir", str(tmp_path / "reference")])
    run_dir = tmp_path / "damaged"
    cli.run("GDAS", argv + ["--save_dir", str(run_dir)])
    last, _, _ = search_files(run_dir)
    assert load_checkpoint(previous_path(last))["epoch"] == 0
    truncate(last)

    cli.run("GDAS", argv + ["--save_dir", str(run_dir)])
    log = (run_dir / f"seed-{SEED}-log.txt").read_text()
    assert f"warning: checkpoint {last} is unusable (checkpoint {last} is truncated or corrupt" in log
    assert f"resuming from the previous one, {previous_path(last)}" in log
    assert f"resumed from {last} after epoch 1" in log
    assert_same_search(run_dir, tmp_path / "reference", epochs=2)


def test_truncated_checkpoint_without_prev_is_a_clear_error_and_changes_no_file(tmp_path, monkeypatch, capsys):
    argv = TINY_SEARCH + ["--epochs", "1", "--save_dir", str(tmp_path / "run")]
    cli.run("GDAS", argv)
    last, _, _ = search_files(tmp_path / "run")
    assert not previous_path(last).exists()
    truncate(last)
    log = tmp_path / "run" / f"seed-{SEED}-log.txt"
    before = {path: path.read_bytes() for path in (tmp_path / "run").rglob("*") if path.is_file()}

    code, err = run_main(monkeypatch, capsys, lambda: cli.main("GDAS"), "GDAS.py", argv)
    assert code == 1
    assert err.startswith(f"error: cannot resume: checkpoint {last} is truncated or corrupt")
    assert f"there is no previous checkpoint {previous_path(last)}" in err and f"Delete or move {last}" in err
    after = {path: path.read_bytes() for path in (tmp_path / "run").rglob("*") if path.is_file()}
    assert set(after) == set(before)
    assert all(after[path] == data for path, data in before.items() if path != log)
    assert after[log].startswith(before[log]), "the log is only appended to"


def test_random_seed_rerun_resumes_a_run_whose_last_checkpoint_is_damaged(tmp_path, monkeypatch):
    argv = TINY_SEARCH[:-1] + ["-1", "--epochs", "3", "--save_dir", str(tmp_path / "run")]
    real_run_epoch = SearchLoop.run_epoch

    def crash_in_third_epoch(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_run_epoch(self, epoch)

    monkeypatch.setattr(SearchLoop, "run_epoch", crash_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        cli.run("GDAS", argv)
    monkeypatch.setattr(SearchLoop, "run_epoch", real_run_epoch)
    (last,) = (tmp_path / "run" / "checkpoint").glob("seed-*-basic.pth")
    truncate(last)

    summary = cli.run("GDAS", argv)
    assert list((tmp_path / "run" / "checkpoint").glob("seed-*-basic.pth")) == [last], "no new seed drawn"
    assert f"seed-{summary['seed']}-basic.pth" == last.name and summary["epochs_done"] == 3
    log = (tmp_path / "run" / f"seed-{summary['seed']}-log.txt").read_text()
    assert f"resuming from the previous one, {previous_path(last)}" in log


def test_crash_between_the_best_and_the_last_checkpoint_leaves_them_consistent(tmp_path, monkeypatch, one_thread):
    argv = TINY_SEARCH + ["--epochs", "3"]
    reference = cli.run("GDAS", argv + ["--save_dir", str(tmp_path / "reference")])
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
    assert_same_search(tmp_path / "run", tmp_path / "reference", epochs=3)


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


# ------------------------------------------------------------------------------------------- NaN losses
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
