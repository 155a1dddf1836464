"""What a re-run resumes from, and what it refuses: nothing finished is lost.

A re-run resumes from the last complete epoch (`.prev` when the last checkpoint is damaged or tampered with) and
ends exactly where an uninterrupted run ends (CPU, fixed seed, one thread), also after a SIGKILL at any moment. It
refuses, with one `error:` line and the run folder as it was: another run's or another build's checkpoint, other
optimisation settings (unless `--resume_with_new_settings`, which records the change), and a folder another live
process runs in (the run lock).

The kill tests run the real entry scripts (exps/...) in separate processes that get SIGKILLed, either by themselves
at a chosen moment (e.g. between writing a checkpoint's temporary file and renaming it) or from here. Importing
torch and xautodl takes most of a short run on a small machine, so one launcher process imports them once and
forks a fresh process for every run; the test hooks live in that launcher (tests/crash_launcher.py), never in
xautodl.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO
from run_helpers import (SEED, TINY_SEARCH, TWO_STEP_SEARCH, assert_same, assert_same_search, basic_main_argv,
                         last_checkpoint, one_error_line, run_main, run_search, search_files, snapshot,
                         train_a_net_argv, truncate, without_timings)
from xautodl.commands import basic_main, train_a_net
from xautodl.commands import search as cli
from xautodl.runtime import load_checkpoint, load_resume_checkpoint, previous_path
from xautodl.search.loop import SearchLoop
from xautodl.spaces.nas201 import enumerate_archs, parse_arch


SEARCH_SCRIPT = REPO / "exps" / "NAS-Bench-201-algos" / "GDAS.py"

TRAIN_SCRIPT = REPO / "exps" / "NAS-Bench-201" / "main.py"

BASIC_SCRIPT = REPO / "exps" / "basic" / "basic-main.py"

TIMEOUT_S = 300

LAUNCHER = Path(__file__).resolve().parent / "crash_launcher.py"


# ------------------------------------------------------------------------------------- tampered and damaged checkpoints
def _wrong_shape(state: dict) -> str:
    name = next(key for key, value in state["model"].items() if value.dim() == 4)
    state["model"][name] = torch.zeros(3, 3, 3, 3)
    return f"its {name} has shape [3, 3, 3, 3] where the network this run's settings build has"

TAMPERS = {
    "tensor of the wrong shape": _wrong_shape,
    "negative epoch": lambda state: state.update(epoch=-3) or "its epoch is -3, not an epoch number",
    "string epoch": lambda state: state.update(epoch="1") or "its epoch is '1', not an epoch number",
    "history not a list": lambda state: state.update(history={"a": 1}) or "its history is dict",
    "epoch beyond the total": lambda state: state.update(epoch=7) or "its epoch 8 lies beyond its total of 2 epochs",
    "epoch ahead of its history": lambda state: state.update(history=state["history"][:1])
    or "its history holds 1 epochs, its epoch counter 2",
}

@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_tampered_checkpoint_without_prev_is_one_line_and_changes_nothing(run_copy, monkeypatch, capsys, tamper,
                                                                          one_thread):
    last = last_checkpoint(run_copy)
    previous_path(last).unlink()
    state = load_checkpoint(last)
    phrase = TAMPERS[tamper](state)
    torch.save(state, last)  # still plain data: only its fields are wrong
    before = snapshot(run_copy)

    code, err = run_search(monkeypatch, capsys, [*TWO_STEP_SEARCH, "--epochs", "2", "--save_dir", str(run_copy)])
    line = one_error_line(err)
    assert code == 1
    assert line.startswith(f"error: cannot resume: checkpoint {last} is not one this tool wrote ("), line
    assert phrase in line, (phrase, line)
    assert f"there is no previous checkpoint {previous_path(last)}" in line
    assert snapshot(run_copy) == before

@pytest.mark.parametrize("tamper", ["negative epoch", "tensor of the wrong shape"])
def test_tampered_checkpoint_falls_back_to_prev(run_copy, monkeypatch, capsys, tamper, one_thread):
    last = last_checkpoint(run_copy)
    state = load_checkpoint(last)
    TAMPERS[tamper](state)
    torch.save(state, last)

    summary = cli.run("GDAS", [*TWO_STEP_SEARCH, "--epochs", "2", "--save_dir", str(run_copy)])
    log = (run_copy / f"seed-{SEED}-log.txt").read_text()
    assert f"warning: checkpoint {last} is unusable (checkpoint {last} is not one this tool wrote (" in log
    assert f"resuming from the previous one, {previous_path(last)}" in log
    assert f"resumed from {last} after epoch 1" in log
    assert summary["epochs_done"] == 2 and load_checkpoint(last)["epoch"] == 1

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

def test_a_checkpoint_of_an_earlier_development_build_stops_the_rerun_with_one_line(run_copy, monkeypatch, capsys):
    """Schema-1 search checkpoints (before the epoch skeleton: no `schema_version` 2, no `supernet` key) are not
    read: the re-run names the file and what to do, and changes nothing."""
    last = last_checkpoint(run_copy)
    for path in (last, previous_path(last)):
        state = load_checkpoint(path)
        del state["schema_version"], state["supernet"]
        torch.save(state, path)
    before = snapshot(run_copy)
    code, err = run_search(monkeypatch, capsys, [*TWO_STEP_SEARCH, "--epochs", "3", "--save_dir", str(run_copy)])
    line = one_error_line(err)
    assert code == 1
    assert line == (f"error: checkpoint {last} has no checkpoint schema, not 2: it was written by another "
                    f"development build of xautodl, which this one does not read; delete or move its run folder to "
                    f"start the run again")
    assert snapshot(run_copy) == before


# ------------------------------------------------------------------------------------------------- settings-safe resume
def _config_with_lr(tmp_path: Path, lr: str) -> Path:
    import json

    from conftest import REPO

    config = json.loads((REPO / "xautodl/configs/nas-benchmark/algos/GDAS.config").read_text())
    config["LR"][1] = lr
    path = tmp_path / f"lr-{lr}.config"
    path.write_text(json.dumps(config))
    return path

@pytest.mark.parametrize("change, named", [
    (["--arch_learning_rate", "0.001"], "a_optimizer.lr 0.0003 (checkpoint) vs 0.001 (this command)"),
    (["--arch_weight_decay", "0.01"], "a_optimizer.weight_decay 0.001 (checkpoint) vs 0.01 (this command)"),
    (["--tau_max", "5", "--tau_min", "0.5"], "tau_max 10.0 (checkpoint) vs 5.0 (this command); tau_min 0.1 "
                                             "(checkpoint) vs 0.5 (this command)"),
    (["--config_path", "LR=0.05"], "w_optimizer.lr 0.025 (checkpoint) vs 0.05 (this command)"),
])
def test_a_rerun_with_other_optimisation_settings_is_refused_naming_them(run_copy, tmp_path, monkeypatch, capsys,
                                                                       change, named):
    if change[0] == "--config_path":
        change = ["--config_path", str(_config_with_lr(tmp_path, "0.05"))]
    before = snapshot(run_copy)
    code, err = run_search(monkeypatch, capsys, [*TWO_STEP_SEARCH, "--epochs", "3", "--save_dir", str(run_copy),
                                                 *change])
    line = one_error_line(err)
    assert code == 1
    assert line.startswith(f"error: {last_checkpoint(run_copy)} was trained with other settings: {named}; "), line
    assert line.endswith("or --resume_with_new_settings to continue this one with the new settings (the change is "
                         "recorded in its history)")
    assert snapshot(run_copy) == before

def test_resume_with_new_settings_continues_with_them_and_records_the_change(run_copy, one_thread):
    argv = [*TWO_STEP_SEARCH, "--epochs", "3", "--save_dir", str(run_copy), "--arch_learning_rate", "0.001",
            "--resume_with_new_settings"]
    summary = cli.run("GDAS", argv)
    assert [entry.get("settings_changed") for entry in summary["history"]] == [
        None, None, {"a_optimizer.lr": [0.0003, 0.001]}]
    state = load_checkpoint(last_checkpoint(run_copy))
    assert state["a_optimizer"]["param_groups"][0]["lr"] == 0.001 and state["settings"]["a_optimizer.lr"] == 0.001
    log = (run_copy / f"seed-{SEED}-log.txt").read_text()
    assert "continuing with new settings (--resume_with_new_settings): a_optimizer.lr 0.0003 -> 0.001" in log
    # The run now holds the new settings: a plain re-run with them finds it finished, without the flag.
    again = cli.run("GDAS", argv[:-1])
    assert again["epochs_done"] == 3

@pytest.fixture(scope="module")
def one_epoch_basic_main(tmp_path_factory) -> tuple[Path, list[str], dict]:
    """A finished 1-epoch basic-main run (tiny CIFAR-10, a GDAS_V1 network), made once for the tests that re-run
    it with other settings: (its folder, its command line but --save_dir and --optim_config, its optim config)."""
    import fakedata
    from test_basic_main import arch_config
    from xautodl.commands import basic_main

    root = tmp_path_factory.mktemp("basic-main")
    fakedata.write_cifar10(root / "torch_home" / "cifar.python", n_train=32, n_test=16)
    optim = json.loads((REPO / "configs/opts/NAS-CIFAR.config").read_text())
    (root / "optim.config").write_text(json.dumps(optim))
    model_config = arch_config(root / "gdas.config", "GDAS_V1", 8)
    argv = ["--dataset", "cifar10", "--model_config", str(model_config), "--rand_seed", "3", "--epochs", "1",
            "--warmup", "0", "--batch_size", "8", "--limit_batches", "2", "--device", "cpu", "--quiet"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(root / "torch_home"))
        basic_main.run([*argv, "--save_dir", str(root / "run"), "--optim_config", str(root / "optim.config")])
    return root, argv, optim


@pytest.mark.parametrize("entry, value, named", [
    ("auxiliary", "0.2", "aux_weight 0.4 (checkpoint) vs 0.2 (this command)"),
    ("criterion", "SmoothSoftmax", "label_smoothing 0.0 (checkpoint) vs 0.1 (this command)"),
])
def test_basic_main_refuses_another_auxiliary_weight_or_criterion(one_epoch_basic_main, tmp_path, monkeypatch,
                                                                  capsys, entry, value, named):
    from xautodl.commands import basic_main

    root, argv, optim = one_epoch_basic_main
    shutil.copytree(root / "run", tmp_path / "run")
    monkeypatch.setenv("TORCH_HOME", str(root / "torch_home"))
    changed = dict(optim, **{entry: ["str" if entry == "criterion" else "float", value]})
    (tmp_path / "changed.config").write_text(json.dumps(changed))
    before = snapshot(tmp_path / "run")
    monkeypatch.setattr(sys, "argv", ["basic-main.py", *argv, "--save_dir", str(tmp_path / "run"), "--epochs", "2",
                                      "--optim_config", str(tmp_path / "changed.config")])
    with pytest.raises(SystemExit) as ended:
        basic_main.main()
    line = one_error_line(capsys.readouterr().err)
    assert ended.value.code == 1 and "was trained with other settings: " in line and named in line, line
    assert snapshot(tmp_path / "run") == before


# -------------------------------------------------------------------------------------------------- one process per run
HOLDER = """
import sys, time
from xautodl.commands import search
from xautodl.search.loop import SearchLoop
def hold(self, epoch):
    print("holding", flush=True)
    time.sleep(600)
SearchLoop.run_epoch = hold
search.run("GDAS", sys.argv[1:])
"""

def start_holder(argv: list[str]):
    """A search process that takes the run and then blocks in its first epoch."""
    import os
    import subprocess

    from conftest import REPO

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, *argv], stdout=subprocess.PIPE, text=True, env=env)
    for line in holder.stdout:
        if line.strip() == "holding":
            return holder
    holder.wait(timeout=30)
    pytest.fail(f"the holder exited with {holder.returncode} before taking the run")

def test_a_second_run_on_the_same_folder_stops_at_once_and_a_killed_holder_leaves_no_lock(run_copy, monkeypatch,
                                                                                         capsys, one_thread):
    import signal

    argv = [*TWO_STEP_SEARCH, "--epochs", "3", "--save_dir", str(run_copy)]
    holder = start_holder(argv)
    try:
        before = snapshot(run_copy)
        log = run_copy / f"seed-{SEED}-log.txt"
        log_before = log.read_bytes()
        code, err = run_search(monkeypatch, capsys, argv)
        line = one_error_line(err)
        assert code == 1
        assert line.startswith(f"error: {run_copy} is in use: another process (PID {holder.pid} on "), line
        assert "wait for it to end or stop it, or pass another --save_dir or seed" in line
        assert snapshot(run_copy) == before
        assert log.read_bytes() == log_before, "the refused run logged nothing"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # SIGKILL releases the lock with the process: the same command now runs.
    summary = cli.run("GDAS", argv)
    assert summary["epochs_done"] == 3


# -------------------------------------------------------------------------------------------------------------- kill -9
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
