"""The one checkpoint format: plain data written atomically (a crash leaves the old or the new file, never half),
the previous file kept as `.prev` and used when the last one is damaged, loaded with `weights_only=True` only,
one schema number (a file of an earlier development build is refused with one line), and JSON records written
the same way. The run-level cases (unsafe files, full disks, stale temporaries) run the tiny search."""
from __future__ import annotations

import argparse
import dataclasses
import errno
import io
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from run_helpers import TWO_STEP_SEARCH, SEED, last_checkpoint, one_error_line, run_search, snapshot
from xautodl.commands import search as cli
from xautodl.errors import CheckpointError, XAutoDLError
from xautodl.runtime import (
    CHECKPOINT_SCHEMA,
    UnsafeCheckpointError,
    atomic_write_json,
    load_checkpoint,
    load_resume_checkpoint,
    previous_path,
    save_checkpoint,
    to_plain,
)
from xautodl.runtime import checkpoint as checkpoint_module
from xautodl.runtime.checkpoint import OutdatedCheckpointError


REPO_ROOT = Path(__file__).resolve().parents[1]

class Pickled:
    """A custom class: a checkpoint holding one cannot be loaded with weights_only."""

    def __init__(self, value: int) -> None:
        self.value = value

class RecordingLogger:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


# -------------------------------------------------------------------------------------------------------------- writing
def test_checkpoint_round_trip_records_the_schema(tmp_path):
    state = {"epoch": 3, "weights": {"w": torch.arange(4.0)}, "args": {"seed": 1, "name": "GDAS"}, "history": [[1, 2]],
             "shape": torch.Size([2, 3]), "best": None}
    path = save_checkpoint(tmp_path / "checkpoint" / "seed-1-basic.pth", state)
    loaded = load_checkpoint(path)
    assert loaded["schema_version"] == CHECKPOINT_SCHEMA == 2
    assert "schema_version" not in state
    assert torch.equal(loaded["weights"]["w"], torch.arange(4.0))
    assert loaded["args"] == {"seed": 1, "name": "GDAS"} and loaded["history"] == [[1, 2]]
    assert not previous_path(path).exists()

def test_saving_again_keeps_the_previous_file(tmp_path):
    path = tmp_path / "ck.pth"
    for epoch in range(3):
        save_checkpoint(path, {"epoch": epoch})
    assert load_checkpoint(path)["epoch"] == 2
    assert load_checkpoint(previous_path(path))["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pth", "ck.pth.prev"]

@pytest.mark.parametrize(
    "bad, where",
    [
        ({"args": argparse.Namespace(lr=0.1)}, r"state\['args'\] is a Namespace"),
        ({"path": Path("x")}, r"state\['path'\] is a PosixPath|state\['path'\] is a WindowsPath"),
        ({"alphas": [np.zeros(3)]}, r"state\['alphas'\]\[0\] is a ndarray"),
        ({"genotype": Pickled(1)}, r"state\['genotype'\] is a Pickled"),
        ({(1, 2): 3}, r"checkpoint key \(1, 2\) in state is a tuple"),
    ],
)
def test_non_plain_state_is_refused_before_writing(tmp_path, bad, where):
    with pytest.raises(TypeError, match=where):
        save_checkpoint(tmp_path / "ck.pth", bad)
    assert list(tmp_path.iterdir()) == []

def test_a_write_interrupted_midway_leaves_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck.pth"
    save_checkpoint(path, {"epoch": 1, "w": torch.ones(1000)})
    real_save = torch.save

    def half_write_then_fail(obj, handle):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", half_write_then_fail)
    full = (r"cannot write checkpoint .*ck.pth: no space left on the device \(.* free in .*; the checkpoint needs "
            r"about 4 KiB\); free some space and re-run: the previous checkpoint is kept")
    with pytest.raises(CheckpointError, match=full):
        save_checkpoint(path, {"epoch": 2, "w": torch.zeros(1000)})
    monkeypatch.undo()
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 1 and torch.equal(loaded["w"], torch.ones(1000))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pth"]

KILLED_WRITER = textwrap.dedent(
    """
    import io, sys, time, torch
    from xautodl.runtime import checkpoint, save_checkpoint
    path = sys.argv[1]
    for epoch in (1, 2):
        save_checkpoint(path, {"epoch": epoch, "w": torch.full((50000,), float(epoch))})
    real_save = torch.save
    def slow_save(obj, handle):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        handle.write(buffer.getvalue()[:100000])
        handle.flush()
        print("mid-write", flush=True)
        time.sleep(60)
    checkpoint.torch.save = slow_save
    save_checkpoint(path, {"epoch": 3, "w": torch.full((50000,), 3.0)})
    """
)

def test_a_writer_killed_mid_write_leaves_loadable_checkpoints(tmp_path):
    path = tmp_path / "checkpoint" / "seed-1-basic.pth"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                              env=env, cwd=REPO_ROOT)
    try:
        assert writer.stdout.readline().strip() == "mid-write"
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    leftovers = [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].stat().st_size == 100000
    resumed = load_resume_checkpoint(path)
    assert resumed["epoch"] == 2 and torch.equal(resumed["w"], torch.full((50000,), 2.0))
    assert load_checkpoint(previous_path(path))["epoch"] == 1
    save_checkpoint(path, {"epoch": 3})
    assert sorted(p.name for p in path.parent.iterdir()) == ["seed-1-basic.pth", "seed-1-basic.pth.prev"]

def test_written_files_get_the_usual_permissions(tmp_path):
    from xautodl.runtime.serialization import atomic_write_json

    umask = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "ck.pth", {"epoch": 1})
        atomic_write_json(tmp_path / "summary.json", {"a": 1})
    finally:
        os.umask(umask)
    assert (tmp_path / "ck.pth").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == 0o644

def test_checkpoint_into_an_unwritable_place(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*file/ck.pth"):
        save_checkpoint(blocker / "ck.pth", {"epoch": 1})

def test_a_checkpoint_writer_never_removes_another_live_writers_temporary(tmp_path):
    import socket

    path = tmp_path / "ck.pth"
    live = tmp_path / f".{path.name}~{socket.gethostname()}~{os.getppid()}~inflight.tmp"
    live.write_bytes(b"another writer is filling this")
    save_checkpoint(path, {"epoch": 1})
    save_checkpoint(path, {"epoch": 2})
    assert live.read_bytes() == b"another writer is filling this"
    assert load_checkpoint(path)["epoch"] == 2


# --------------------------------------------------------------------------------------------------- reading, and .prev
def test_resume_without_checkpoints_starts_from_scratch(tmp_path):
    assert load_resume_checkpoint(tmp_path / "none.pth") is None

def test_resume_falls_back_to_prev_when_the_last_file_is_corrupt(tmp_path):
    path = tmp_path / "ck.pth"
    save_checkpoint(path, {"epoch": 1})
    save_checkpoint(path, {"epoch": 2})
    path.write_bytes(path.read_bytes()[:200])
    logger = RecordingLogger()
    assert load_resume_checkpoint(path, logger=logger)["epoch"] == 1
    assert len(logger.lines) == 1
    assert f"checkpoint {path} is unusable" in logger.lines[0] and "truncated or corrupt" in logger.lines[0]
    assert str(previous_path(path)) in logger.lines[0]
    assert "damaged file is kept as" in logger.lines[0] and (tmp_path / "ck.pth.damaged").exists()
    with pytest.warns(RuntimeWarning, match="resuming from the previous one"):
        assert load_resume_checkpoint(path)["epoch"] == 1

def test_saving_after_a_fallback_keeps_the_good_previous_file(tmp_path):
    path = tmp_path / "ck.pth"
    save_checkpoint(path, {"epoch": 1})
    save_checkpoint(path, {"epoch": 2})
    path.write_bytes(b"damaged")
    with pytest.warns(RuntimeWarning):
        state = load_resume_checkpoint(path)
    save_checkpoint(path, {"epoch": state["epoch"] + 1})
    # Killed again right now: the fallback must still be a good file, not the damaged one.
    assert load_checkpoint(previous_path(path))["epoch"] == 1
    assert load_checkpoint(path)["epoch"] == 2

def test_resume_uses_prev_when_the_last_file_is_missing(tmp_path):
    path = tmp_path / "ck.pth"
    save_checkpoint(path, {"epoch": 1})
    save_checkpoint(path, {"epoch": 2})
    path.unlink()
    with pytest.warns(RuntimeWarning, match="it does not exist"):
        assert load_resume_checkpoint(path)["epoch"] == 1

def test_resume_refuses_to_start_over_when_no_file_loads(tmp_path):
    path = tmp_path / "ck.pth"
    path.write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match=r"cannot resume: .*truncated or corrupt.*no previous checkpoint .*Delete or move"):
        load_resume_checkpoint(path)
    previous_path(path).write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"cannot resume from .*ck.pth .* nor from .*ck.pth.prev"):
        load_resume_checkpoint(path)

@pytest.mark.parametrize("size", [0, 10, 500, -20])
def test_truncated_files_name_the_file(tmp_path, size):
    path = tmp_path / "ck.pth"
    save_checkpoint(path, {"w": torch.randn(256)})
    data = path.read_bytes()
    path.write_bytes(data[:size])
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} is truncated or corrupt"):
        load_checkpoint(path)

def test_checkpoints_needing_unpickling_are_refused(tmp_path):
    path = tmp_path / "foreign.pth"
    torch.save({"epoch": 1, "genotype": Pickled(3)}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"refusing to load checkpoint .*foreign.pth: .*Pickled.*weights_only=True"):
        load_checkpoint(path)
    save_checkpoint(tmp_path / "ok.pth", {"epoch": 0})
    os.replace(tmp_path / "ok.pth", previous_path(path))
    with pytest.raises(UnsafeCheckpointError):
        load_resume_checkpoint(path)

def test_missing_and_foreign_shaped_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint .*absent.pth not found"):
        load_checkpoint(tmp_path / "absent.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="holds a list, expected a dict"):
        load_checkpoint(tmp_path / "list.pth")
    torch.save({"schema_version": CHECKPOINT_SCHEMA + 1}, tmp_path / "future.pth")
    with pytest.raises(CheckpointError, match="has checkpoint schema 3, not 2: it was written by another development"):
        load_checkpoint(tmp_path / "future.pth")

@pytest.mark.parametrize("schema", [None, 1, CHECKPOINT_SCHEMA + 1, "2"])
def test_a_checkpoint_of_another_development_build_is_refused_with_one_line(tmp_path, schema):
    """No release wrote another checkpoint format: a file with another schema number, or none, is named with what
    to do, never read; its `.prev` (same build) is no way out either."""
    path = save_checkpoint(tmp_path / "ck.pth", {"epoch": 0})
    assert load_checkpoint(path)["schema_version"] == CHECKPOINT_SCHEMA == 2
    state = {"epoch": 1} if schema is None else {"schema_version": schema, "epoch": 1}
    torch.save(state, path)
    torch.save(state, previous_path(path))
    written = "no checkpoint schema" if schema is None else f"checkpoint schema {schema!r}"
    message = (f"checkpoint {path} has {written}, not 2: it was written by another development build of xautodl, "
               f"which this one does not read; delete or move its run folder to start the run again")
    with pytest.raises(OutdatedCheckpointError) as refused:
        load_checkpoint(path)
    assert str(refused.value) == message and "\n" not in message
    with pytest.raises(OutdatedCheckpointError):
        load_resume_checkpoint(path)


# --------------------------------------------------------------------------------------------------------- JSON records
@dataclasses.dataclass
class Timing:
    seconds: float

def test_to_plain_converts_run_records():
    record = {
        "args": argparse.Namespace(data_path=Path("/data"), xshape=(1, 3, 32, 32), seed=-1),
        "acc": torch.tensor(93.5),
        "alphas": torch.zeros(2, 2),
        "np": np.float32(0.5),
        "timing": Timing(1.5),
        "ids": {3, 1},
        1: "int key",
        "device": torch.device("cpu"),
    }
    assert to_plain(record) == {
        "args": {"data_path": "/data", "xshape": [1, 3, 32, 32], "seed": -1},
        "acc": 93.5,
        "alphas": [[0.0, 0.0], [0.0, 0.0]],
        "np": 0.5,
        "timing": {"seconds": 1.5},
        "ids": [1, 3],
        "1": "int key",
        "device": "cpu",
    }
    with pytest.raises(TypeError, match="cannot convert Pickled"):
        to_plain({"x": Pickled(1)})

def test_atomic_write_json(tmp_path):
    path = atomic_write_json(tmp_path / "run" / "summary.json", {"acc": [1.0, math.nan], "args": argparse.Namespace(a=1)})
    assert json.loads(path.read_text()) == {"acc": [1.0, None], "args": {"a": 1}}
    atomic_write_json(path, {"acc": 2})
    assert json.loads(path.read_text()) == {"acc": 2}
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(XAutoDLError, match=r"cannot write .*file/summary.json"):
        atomic_write_json(tmp_path / "file" / "summary.json", {})


# ------------------------------------------------------------------------------------------------------------- in a run
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

    code, err = run_search(monkeypatch, capsys, [*TWO_STEP_SEARCH, "--epochs", "2", "--save_dir", str(run_copy)])
    line = one_error_line(err)
    assert code == 1
    assert line.startswith(f"error: refusing to load checkpoint {last}: it stores Python objects (posix.system)")
    assert "truncated or corrupt" not in line
    assert not marker.exists()
    assert snapshot(run_copy) == before

def test_disk_full_while_writing_a_checkpoint_names_the_file_and_keeps_the_previous(run_copy, monkeypatch, capsys,
                                                                                  one_thread):
    last = last_checkpoint(run_copy)
    kept = last.read_bytes()
    real_save = torch.save

    def full_disk(obj, handle, *args, **kwargs):
        real_save(obj, handle, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    code, err = run_search(monkeypatch, capsys, [*TWO_STEP_SEARCH, "--epochs", "3", "--save_dir", str(run_copy)])
    line = one_error_line(err)
    assert code == 1
    assert f"cannot write checkpoint {run_copy / 'checkpoint' / f'seed-{SEED}-best.pth'}" in line or \
        f"cannot write checkpoint {last}" in line, line
    assert "no space left on the device" in line and " free in " in line and "needs about" in line
    assert last.read_bytes() == kept and load_checkpoint(last)["epoch"] == 1
    assert not list(last.parent.glob(".*.tmp")), "the half-written temporary was removed"

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

    cli.run("GDAS", [*TWO_STEP_SEARCH, "--epochs", "3", "--save_dir", str(run_copy)])
    assert [path.exists() for path in dead] == [False, False]
    assert [path.exists() for path in live] == [True, True]
