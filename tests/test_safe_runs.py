"""Runs that cannot be corrupted: tampered checkpoints, full disks, settings changed between runs, two runs on one
folder, stale temporaries, signals. Each failing case ends in one `error: ...` line, a non-zero exit status, no
traceback, and the run folder as it was (a log line at most)."""
from __future__ import annotations

import errno
import shutil
import sys
from pathlib import Path

import pytest
import torch

from xautodl.commands import search as cli
from xautodl.runtime import checkpoint as checkpoint_module
from xautodl.runtime import load_checkpoint, previous_path

SEED = 5
TINY_SEARCH = ["--dataset", "digits", "--channel", "4", "--num_cells", "1", "--batch_size", "16",
               "--limit_batches", "2",
               "--device", "cpu", "--quiet", "--no_benchmark", "--rand_seed", str(SEED)]


def last_checkpoint(run_dir: Path) -> Path:
    return run_dir / "checkpoint" / f"seed-{SEED}-basic.pth"


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` but the log, by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith("-log.txt")}


def run_search(monkeypatch, capsys, argv: list[str], algorithm: str = "GDAS") -> tuple[int, str]:
    """The search entry point's main() with `argv`; (exit status, stderr)."""
    monkeypatch.setattr(sys, "argv", [f"{algorithm}.py", *argv])
    with pytest.raises(SystemExit) as exit_info:
        cli.main(algorithm)
    return exit_info.value.code, capsys.readouterr().err


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory) -> Path:
    """A finished 2-epoch tiny search (its last checkpoint and the `.prev` of epoch 1)."""
    run_dir = tmp_path_factory.mktemp("searched") / "run"
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cli.run("GDAS", [*TINY_SEARCH, "--epochs", "2", "--save_dir", str(run_dir)])
    finally:
        torch.set_num_threads(previous)
    return run_dir


@pytest.fixture
def run_copy(two_epoch_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(two_epoch_run, copy)
    return copy


# --------------------------------------------------------------------------------------- tampered checkpoints
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

    code, err = run_search(monkeypatch, capsys, [*TINY_SEARCH, "--epochs", "2", "--save_dir", str(run_copy)])
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

    summary = cli.run("GDAS", [*TINY_SEARCH, "--epochs", "2", "--save_dir", str(run_copy)])
    log = (run_copy / f"seed-{SEED}-log.txt").read_text()
    assert f"warning: checkpoint {last} is unusable (checkpoint {last} is not one this tool wrote (" in log
    assert f"resuming from the previous one, {previous_path(last)}" in log
    assert f"resumed from {last} after epoch 1" in log
    assert summary["epochs_done"] == 2 and load_checkpoint(last)["epoch"] == 1


def test_unsafe_checkpoint_is_reported_unsafe_with_this_torchs_wording(tmp_path, run_copy, monkeypatch, capsys):
    """torch 2.6+ words a blocked module as "unsupported GLOBAL posix.system whose module posix is blocked"."""
    import os

    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    last = last_checkpoint(run_copy)
    state = load_checkpoint(last)
    state["history"][0]["genotype"] = Payload()
    torch.save(state, last)
    before = snapshot(run_copy)

    code, err = run_search(monkeypatch, capsys, [*TINY_SEARCH, "--epochs", "2", "--save_dir", str(run_copy)])
    line = one_error_line(err)
    assert code == 1
    assert line.startswith(f"error: refusing to load checkpoint {last}: it stores Python objects (posix.system)")
    assert "truncated or corrupt" not in line
    assert not marker.exists()
    assert snapshot(run_copy) == before


# ------------------------------------------------------------------------------------------------ disk full
def test_disk_full_while_writing_a_checkpoint_names_the_file_and_keeps_the_previous(run_copy, monkeypatch, capsys,
                                                                                  one_thread):
    last = last_checkpoint(run_copy)
    kept = last.read_bytes()
    real_save = torch.save

    def full_disk(obj, handle, *args, **kwargs):
        real_save(obj, handle, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    code, err = run_search(monkeypatch, capsys, [*TINY_SEARCH, "--epochs", "3", "--save_dir", str(run_copy)])
    line = one_error_line(err)
    assert code == 1
    assert f"cannot write checkpoint {run_copy / 'checkpoint' / f'seed-{SEED}-best.pth'}" in line or \
        f"cannot write checkpoint {last}" in line, line
    assert "no space left on the device" in line and " free in " in line and "needs about" in line
    assert last.read_bytes() == kept and load_checkpoint(last)["epoch"] == 1
    assert not list(last.parent.glob(".*.tmp")), "the half-written temporary was removed"


# ------------------------------------------------------------------------------------------ unreadable data
# The tests run as root here, for whom chmod denies nothing; the denial is therefore simulated where the readers
# meet the file system (os.access, open, iterdir), with the PermissionError the kernel gives a user.
def _denied(path) -> PermissionError:
    return PermissionError(errno.EACCES, "Permission denied", str(path))


def test_data_folder_without_read_permission(tmp_path, monkeypatch, capsys):
    import fakedata
    from xautodl.datasets import roots

    root = fakedata.write_cifar10(tmp_path / "cifar.python", n_train=32, n_test=16)
    folder = root / "cifar-10-batches-py"
    real_access = roots.os.access
    monkeypatch.setattr(roots.os, "access", lambda path, mode: Path(path) != folder and real_access(path, mode))
    run_dir = tmp_path / "run"
    code, err = run_search(monkeypatch, capsys, [*TINY_SEARCH, "--dataset", "cifar10", "--data_path", str(root),
                                                 "--save_dir", str(run_dir), "--epochs", "1"])
    line = one_error_line(err)
    assert code == 1
    assert line == (f"error: cannot read {folder}: permission denied; give your user read access to the data "
                    "(chmod -R u+rX on its folder) or copy it to a folder you can read, and pass --data_path")
    assert not last_checkpoint(run_dir).exists()


def test_data_file_without_read_permission(tmp_path, monkeypatch, capsys):
    import builtins

    import fakedata
    from xautodl.datasets import pickled

    root = fakedata.write_cifar10(tmp_path / "cifar.python", n_train=32, n_test=16)
    locked = root / "cifar-10-batches-py" / "data_batch_2"

    def guarded_open(file, *args, **kwargs):
        if Path(file) == locked:
            raise _denied(file)
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(pickled, "open", guarded_open, raising=False)
    code, err = run_search(monkeypatch, capsys, [*TINY_SEARCH, "--dataset", "cifar10", "--data_path", str(root),
                                                 "--save_dir", str(tmp_path / "run"), "--epochs", "1"])
    line = one_error_line(err)
    assert code == 1 and line.startswith(f"error: cannot read {locked}: permission denied;"), line


def test_image_folder_without_read_permission(tmp_path, monkeypatch, capsys):
    import fakedata

    root = fakedata.write_image_folder(tmp_path / "images")
    locked = sorted((root / "train").iterdir())[1]  # one class folder of the images the search reads
    real_iterdir = Path.iterdir

    def guarded_iterdir(self):
        if self == locked:
            raise _denied(self)
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", guarded_iterdir)
    code, err = run_search(monkeypatch, capsys, [*TINY_SEARCH, "--dataset", "folder", "--data_path", str(root),
                                                 "--save_dir", str(tmp_path / "run"), "--epochs", "1"])
    line = one_error_line(err)
    assert code == 1 and line.startswith(f"error: cannot read {locked}: permission denied;"), line


@pytest.mark.parametrize("over", ["past the limit (PIL warns)", "past twice the limit (PIL refuses)"])
def test_decompression_bomb_in_an_image_folder(tmp_path, monkeypatch, capsys, over):
    import fakedata
    from PIL import Image

    root = fakedata.write_image_folder(tmp_path / "images", size=20)
    bomb = sorted((root / "train").rglob("*.png"))[1]
    Image.new("RGB", (60, 60)).save(bomb)  # 3600 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000 if over.startswith("past the") else 1000)
    code, err = run_search(monkeypatch, capsys, [*TINY_SEARCH, "--dataset", "folder", "--data_path", str(root),
                                                 "--save_dir", str(tmp_path / "run"), "--epochs", "1"])
    line = one_error_line(err)
    assert code == 1
    assert line.startswith(f"error: image {bomb} has more pixels than PIL's decompression-bomb limit"), line
    assert "remove it, or shrink it" in line


# ------------------------------------------------------------------------------------------ one run per folder
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

    argv = [*TINY_SEARCH, "--epochs", "3", "--save_dir", str(run_copy)]
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


def _dead_pid() -> int:
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


def test_temporaries_of_dead_writers_are_removed_at_start_and_a_live_writers_never(run_copy, monkeypatch, capsys,
                                                                                   one_thread):
    import os
    import socket

    from xautodl.runtime.serialization import temporary_prefix

    host = socket.gethostname()
    last = last_checkpoint(run_copy)
    summary = run_copy / f"seed-{SEED}-summary.json"
    dead = [last.parent / f".{last.name}~{host}~{_dead_pid()}~abc.tmp",
            run_copy / f".{summary.name}~{host}~{_dead_pid()}~def.tmp"]
    live = [last.parent / f"{temporary_prefix(last)}live.tmp".replace(f"~{os.getpid()}~", f"~{os.getppid()}~"),
            last.parent / f".{last.name}~other-host~{_dead_pid()}~ghi.tmp"]  # another machine's: not ours to judge
    for path in dead + live:
        path.write_bytes(b"half a checkpoint")

    cli.run("GDAS", [*TINY_SEARCH, "--epochs", "3", "--save_dir", str(run_copy)])
    assert [path.exists() for path in dead] == [False, False]
    assert [path.exists() for path in live] == [True, True]


# ----------------------------------------------------------------------------------- settings-safe resume
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
    code, err = run_search(monkeypatch, capsys, [*TINY_SEARCH, "--epochs", "3", "--save_dir", str(run_copy),
                                                 *change])
    line = one_error_line(err)
    assert code == 1
    assert line.startswith(f"error: {last_checkpoint(run_copy)} was trained with other settings: {named}; "), line
    assert line.endswith("or --resume_with_new_settings to continue this one with the new settings (the change is "
                         "recorded in its history)")
    assert snapshot(run_copy) == before


def test_resume_with_new_settings_continues_with_them_and_records_the_change(run_copy, one_thread):
    argv = [*TINY_SEARCH, "--epochs", "3", "--save_dir", str(run_copy), "--arch_learning_rate", "0.001",
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


@pytest.mark.parametrize("entry, value, named", [
    ("auxiliary", "0.2", "aux_weight 0.4 (checkpoint) vs 0.2 (this command)"),
    ("criterion", "SmoothSoftmax", "label_smoothing 0.0 (checkpoint) vs 0.1 (this command)"),
])
def test_basic_main_refuses_another_auxiliary_weight_or_criterion(tmp_path, monkeypatch, capsys, entry, value, named):
    import json

    import fakedata
    from conftest import REPO
    from test_basic_main import arch_config
    from xautodl.commands import basic_main

    home = tmp_path / "torch_home"
    fakedata.write_cifar10(home / "cifar.python", n_train=32, n_test=16)
    monkeypatch.setenv("TORCH_HOME", str(home))
    optim = json.loads((REPO / "configs/opts/NAS-CIFAR.config").read_text())
    changed = dict(optim, **{entry: ["str" if entry == "criterion" else "float", value]})
    (tmp_path / "optim.config").write_text(json.dumps(optim))
    (tmp_path / "changed.config").write_text(json.dumps(changed))
    model_config = arch_config(tmp_path / "gdas.config", "GDAS_V1", 8)
    argv = ["--dataset", "cifar10", "--model_config", str(model_config), "--save_dir", str(tmp_path / "run"),
            "--rand_seed", "3", "--epochs", "1", "--warmup", "0", "--batch_size", "8", "--limit_batches", "2",
            "--device", "cpu", "--quiet"]
    basic_main.run([*argv, "--optim_config", str(tmp_path / "optim.config")])
    before = snapshot(tmp_path / "run")
    monkeypatch.setattr(sys, "argv", ["basic-main.py", *argv, "--epochs", "2", "--optim_config",
                                      str(tmp_path / "changed.config")])
    with pytest.raises(SystemExit) as ended:
        basic_main.main()
    line = one_error_line(capsys.readouterr().err)
    assert ended.value.code == 1 and "was trained with other settings: " in line and named in line, line
    assert snapshot(tmp_path / "run") == before


# ------------------------------------------------------------------------------------------------- signals
def start_driver(workdir: Path, nproc: int, epochs: int = 400):
    """`bash scripts-search/algos/GDAS.sh digits 1 5` (a long tiny search) in `workdir`, NPROC processes."""
    import os
    import subprocess

    from conftest import REPO

    # TF_CPP_MIN_LOG_LEVEL: TensorFlow, when installed, logs to stderr on its import by TensorBoard.
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", NPROC=str(nproc),
               TF_CPP_MIN_LOG_LEVEL="3")
    flags = ["--channel", "4", "--num_cells", "1", "--batch_size", "16", "--limit_batches", "2", "--epochs",
             str(epochs), "--device", "cpu", "--quiet", "--no_benchmark", "--save_dir", "run"]
    return subprocess.Popen(["bash", str(REPO / "scripts-search/algos/GDAS.sh"), "digits", "1", "5", *flags],
                            cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def without_tensorflow_noise(err: str) -> list[str]:
    """stderr's lines without what TensorFlow's C++ logging prints when TensorBoard imports it (where it is
    installed): not the run's output."""
    import re

    noise = re.compile(r"(WARNING: All log messages before absl|[IWEF]\d{4} |To enable the following instructions)")
    return [line for line in err.strip().splitlines() if not noise.match(line)]


def wait_for_log(path: Path, text: str, process, timeout: float = 240) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not (path.exists() and text in path.read_text()):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the run never logged {text!r}: {process.communicate()[1][-2000:]}")
        time.sleep(0.05)


@pytest.mark.parametrize("signame, nproc", [
    ("SIGTERM", 1), ("SIGHUP", 1),
    pytest.param("SIGTERM", 2, marks=pytest.mark.slow),
])
def test_sigterm_and_sighup_stop_a_run_saved_with_one_line_and_status_75(tmp_path, signame, nproc):
    """The driver `exec`s the run, so the signal a scheduler sends the driver reaches Python; the run stops at its
    next step boundary, saved (mid-epoch, or after the epoch when that was its last step). Under torchrun
    (`xautodl.runtime.launch`) torchrun hands the signal to the workers, they agree on the step, and the line comes
    once, from rank 0, without torchrun's banner, with the workers' status."""
    import re
    import signal

    run_dir = tmp_path / "run"
    driver = start_driver(tmp_path, nproc)
    wait_for_log(run_dir / f"seed-{SEED}-log.txt", "epoch   2/", driver)
    driver.send_signal(getattr(signal, signame))
    _, err = driver.communicate(timeout=120)

    assert driver.returncode == 75, err
    assert "Traceback" not in err and "FAILED" not in err, err
    lines = without_tensorflow_noise(err)
    checkpoints = "run/checkpoint/seed-5"
    assert len(lines) == 1 and re.fullmatch(
        rf"stopped by {signame} after (step 1 of 2 of epoch \d+/400, saved in {checkpoints}-mid-epoch.pth; "
        rf"re-running the same command resumes at step 2|epoch \d+/400, saved in {checkpoints}-basic.pth; "
        rf"re-running the same command resumes with epoch \d+)", lines[0]), lines
    saved = tmp_path / lines[0].split("saved in ")[1].split(";")[0]
    assert load_checkpoint(saved)["epoch"] >= 1
    assert not list(saved.parent.glob(".*.tmp")), "no temporary file is left behind"


def test_a_signal_before_the_epochs_begin_ends_the_run_at_once(tmp_path, monkeypatch, capsys):
    """Outside the epochs (building the data, the model) there is no step to finish: status 128 + N at once."""
    import os
    import signal

    real = cli.get_search_loader

    def loader_then_signal(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(cli, "get_search_loader", loader_then_signal)
    status, err = run_search(monkeypatch, capsys, [*TINY_SEARCH, "--save_dir", str(tmp_path / "run")])
    assert status == 128 + signal.SIGTERM
    assert err.strip() == ("terminated by SIGTERM; the run's last complete epoch is kept and re-running the command "
                           "resumes it")
    assert not list((tmp_path / "run").rglob("*.pth"))


# ------------------------------------------------------------------------- the checkpoint a message names
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
    code, err = run_search(monkeypatch, capsys, [*TINY_SEARCH, "--epochs", "2", "--save_dir", str(run_dir)])
    line = one_error_line(err)
    assert code == 1 and "the train loss became nan in epoch 1" in line
    assert "there is no good checkpoint yet (this was the run's first epoch)" in line and "is kept" not in line
    assert not last_checkpoint(run_dir).exists()


def test_after_resuming_from_prev_the_message_names_prev(run_copy, monkeypatch, capsys, one_thread):
    """The damaged last checkpoint was moved aside, so the good one a re-run resumes from is `.prev`."""
    last = last_checkpoint(run_copy)
    last.write_bytes(b"damaged")
    _nan_in_epoch(monkeypatch, 1)
    code, err = run_search(monkeypatch, capsys, [*TINY_SEARCH, "--epochs", "3", "--save_dir", str(run_copy)])
    line = one_error_line(err)
    assert code == 1 and not last.exists()
    assert f"the last good checkpoint, {previous_path(last)} (epoch 1), is kept and a re-run resumes from it" in line
    assert load_checkpoint(previous_path(last))["epoch"] == 0
