"""How signals end a run (`runtime.signals`): Ctrl-C, SIGTERM and SIGHUP end it with one line and the status a
shell expects (130, 128 + N, or 75 when it stopped saved at a step boundary, also as a torchrun job); outside the
epochs there is no step to finish; a file write holds a signal back until the file is complete."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from run_helpers import SEED, TWO_STEP_SEARCH, run_search
from xautodl.commands import search as cli
from xautodl.errors import ConfigError, XAutoDLError
from xautodl.runtime import load_checkpoint, main_guard, save_checkpoint
from xautodl.runtime import signals


# --------------------------------------------------------------------------------------------------------- entry points
def test_main_guard_returns_the_result():
    assert main_guard(lambda: 42) == 42

def test_main_guard_turns_user_errors_into_exit_status_1(capsys):
    def fail():
        raise ConfigError("config file 'x' not found")

    with pytest.raises(SystemExit) as caught:
        main_guard(fail)
    assert caught.value.code == 1
    assert capsys.readouterr().err == "error: config file 'x' not found\n"

def test_main_guard_exits_130_on_ctrl_c(capsys):
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as caught:
        main_guard(interrupted)
    assert caught.value.code == 130
    assert "interrupted" in capsys.readouterr().err

def test_main_guard_keeps_tracebacks_of_bugs():
    with pytest.raises(ZeroDivisionError):
        main_guard(lambda: 1 / 0)

def test_a_stopped_runs_line_and_status_as_a_shell_and_the_launcher_see_them(tmp_path, monkeypatch):
    """Preempted: its own line, status 75, left for the launcher by rank 0; Terminated: 128 + N; a worker killed
    by signal N (exit code -N) reports 128 + N like a shell."""
    with signals.status_reported_by_workers() as reported:
        assert reported() is None
        monkeypatch.setenv("RANK", "1")
        line, status = signals.closing_line_and_status(signals.Preempted("stopped by SIGTERM after ...", 15))
        assert (line, status) == ("stopped by SIGTERM after ...", 75) and reported() is None, "only rank 0 reports"
        monkeypatch.setenv("RANK", "0")
        signals.closing_line_and_status(signals.Preempted("stopped", 15))
        assert reported() == signals.EXIT_PREEMPTED == 75
    line, status = signals.closing_line_and_status(signals.Terminated(signal.SIGHUP))
    assert status == 128 + signal.SIGHUP and line.startswith("terminated by SIGHUP; the run's last complete epoch")
    assert [signals.shell_status(code) for code in (0, 1, -signal.SIGKILL)] == [0, 1, 128 + signal.SIGKILL]
    assert signals.closing_line_and_status(KeyboardInterrupt()) == ("interrupted", 130)


def test_after_a_stop_request_a_failing_collective_of_a_torchrun_job_is_the_stop():
    """torchrun SIGTERMs the other processes when one fails; their collective then fails for want of it: that
    is the stop (Terminated), not a bug, in a job of several processes. A user's error stays itself."""
    for several, error, expected in [(True, RuntimeError("gloo: connection closed"), signals.Terminated),
                                     (False, RuntimeError("a bug"), RuntimeError),
                                     (True, XAutoDLError("bad flag"), XAutoDLError)]:
        with pytest.raises(expected):
            with signals.stop_at_step_boundary(several_processes=several) as request:
                os.kill(os.getpid(), signal.SIGTERM)
                assert request.signum == signal.SIGTERM
                request.acted_on = True  # as a loop that saved: the signal is not handed on after the block
                raise error


# ---------------------------------------------------------------------------------------------------------- file writes
def test_a_signal_during_a_checkpoint_write_lands_after_it(tmp_path, monkeypatch):
    """SIGTERM raised while the temporary file is being written (the handler raises, as main_guard's does) must
    neither leave the temporary behind nor break the file: the write completes, then the signal arrives."""
    import signal

    from xautodl.runtime import checkpoint

    class Ended(BaseException):
        pass

    def raise_ended(signum, frame):
        raise Ended

    real_write = checkpoint._write_verified_temporary

    def write_then_signal(target, payload):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of the write
        return real_write(target, payload)

    previous = signal.signal(signal.SIGTERM, raise_ended)
    try:
        save_checkpoint(tmp_path / "ck.pth", {"epoch": 1})
        monkeypatch.setattr(checkpoint, "_write_verified_temporary", write_then_signal)
        with pytest.raises(Ended):
            save_checkpoint(tmp_path / "ck.pth", {"epoch": 2})
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert load_checkpoint(tmp_path / "ck.pth")["epoch"] == 2, "the write completed before the signal"
    assert not list(tmp_path.glob(".*.tmp")), "no temporary left behind"


# -------------------------------------------------------------------------- a run, as one process and as a torchrun job
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
    status, err = run_search(monkeypatch, capsys, [*TWO_STEP_SEARCH, "--save_dir", str(tmp_path / "run")])
    assert status == 128 + signal.SIGTERM
    assert err.strip() == ("terminated by SIGTERM; the run's last complete epoch is kept and re-running the command "
                           "resumes it")
    assert not list((tmp_path / "run").rglob("*.pth"))
