"""Run primitives: devices, seeding and RNG state, the run logger, atomic checkpoints, the CLI guard."""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from xautodl.errors import CheckpointError, ConfigError, XAutoDLError
from xautodl.runtime import (
    CHECKPOINT_SCHEMA,
    RunLogger,
    UnsafeCheckpointError,
    atomic_write_json,
    capture_rng_state,
    is_main_process,
    load_checkpoint,
    load_resume_checkpoint,
    main_guard,
    previous_path,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
    select_device,
    to_plain,
    world_info,
)
from xautodl.runtime import checkpoint as checkpoint_module

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


def draw_numbers() -> tuple:
    return random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.randn(), torch.rand(3).tolist()


# ---------------------------------------------------------------- devices


def hide_accelerators(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_auto_falls_back_to_cpu_without_accelerators(monkeypatch):
    hide_accelerators(monkeypatch)
    assert select_device("auto") == torch.device("cpu")
    assert select_device() == torch.device("cpu")
    assert select_device("CPU") == torch.device("cpu")


def test_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == torch.device("mps")


@pytest.mark.parametrize(
    "name, pattern",
    [
        ("cuda", r"'cuda' asked for, but CUDA is not available .*pass --device cpu"),
        ("cuda:1", r"CUDA is not available"),
        ("mps", r"'mps' asked for, but Apple MPS is not available .*--device cpu"),
        ("tpu", r"unknown device 'tpu'; use one of auto, cpu, cuda, mps"),
    ],
)
def test_absent_or_unknown_devices_say_how_to_fix(monkeypatch, name, pattern):
    hide_accelerators(monkeypatch)
    with pytest.raises(XAutoDLError, match=pattern):
        select_device(name)


def test_cuda_index_beyond_the_visible_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert select_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(XAutoDLError, match=r"only 2 CUDA device\(s\) are visible"):
        select_device("cuda:2")


# ---------------------------------------------------------------- seeding and RNG state


def test_a_seed_reproduces_every_generator():
    assert seed_everything(7) == 7
    first = draw_numbers()
    seed_everything(7)
    assert draw_numbers() == first
    seed_everything(8)
    assert draw_numbers() != first


def test_minus_one_draws_a_seed_that_reproduces_the_run():
    drawn = {seed_everything(-1) for _ in range(5)}
    assert all(isinstance(seed, int) and 0 < seed < 100_000 for seed in drawn)
    assert len(drawn) > 1
    seed = seed_everything(-1)
    first = draw_numbers()
    seed_everything(seed)
    assert draw_numbers() == first


@pytest.mark.parametrize("seed", [-2, 2**32, 1.5, True, "3"])
def test_invalid_seeds_are_refused(seed):
    with pytest.raises(ConfigError, match="seed must be -1"):
        seed_everything(seed)


def test_rng_state_round_trip_through_a_weights_only_checkpoint(tmp_path):
    seed_everything(3)
    draw_numbers()  # leaves a cached gaussian in python's and numpy's generators
    save_checkpoint(tmp_path / "rng.pth", {"rng": capture_rng_state()})
    expected = draw_numbers()
    seed_everything(99)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pth")["rng"])
    assert draw_numbers() == expected


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_rng_state_and_tensors_round_trip(tmp_path):
    assert select_device("auto") == torch.device("cuda") and select_device("cuda:0") == torch.device("cuda:0")
    seed_everything(5)
    torch.rand(1, device="cuda")
    path = save_checkpoint(tmp_path / "cuda.pth", {"rng": capture_rng_state(), "w": torch.arange(3.0, device="cuda")})
    expected = torch.rand(4, device="cuda").tolist(), torch.rand(2).tolist()
    seed_everything(6)
    state = load_checkpoint(path)
    assert state["w"].device.type == "cpu" and "cuda" in state["rng"]
    assert load_checkpoint(path, map_location="cuda")["w"].is_cuda
    restore_rng_state(state["rng"])
    assert (torch.rand(4, device="cuda").tolist(), torch.rand(2).tolist()) == expected


def test_rng_state_is_plain_data():
    state = capture_rng_state()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert set(loaded) >= {"python", "numpy", "torch"}


# ---------------------------------------------------------------- logger


def test_logger_writes_timestamped_lines_to_stdout_and_file(tmp_path, capsys):
    with RunLogger(tmp_path / "run", tensorboard=False) as logger:
        logger.log("epoch 1: accuracy 50.00%")
        logger.log("two\nlines")
    out = capsys.readouterr().out
    text = (tmp_path / "run" / "log.txt").read_text()
    assert text.splitlines()[0].endswith("] epoch 1: accuracy 50.00%")
    assert text.splitlines()[0].startswith("[20")
    assert [line.split("] ", 1)[1] for line in text.splitlines()] == ["epoch 1: accuracy 50.00%", "two", "lines"]
    assert out == text
    assert not list((tmp_path / "run").glob("events.*"))


def test_logger_appends_across_runs(tmp_path):
    for message in ("first", "second"):
        with RunLogger(tmp_path, log_name="search.log", tensorboard=False, quiet=True) as logger:
            logger.log(message)
    lines = (tmp_path / "search.log").read_text().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == ["first", "second"]


def test_logger_writes_tensorboard_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with RunLogger(tmp_path) as logger:
        logger.scalar("search/accuracy", 12.5, 0)
        logger.scalars({"search/accuracy": 25.0, "search/tau": torch.tensor(9.5)}, 1)
    events = list(tmp_path.glob("events.out.tfevents.*"))
    assert len(events) == 1
    accumulator = EventAccumulator(str(tmp_path))
    accumulator.Reload()
    assert [(e.step, e.value) for e in accumulator.Scalars("search/accuracy")] == [(0, 12.5), (1, 25.0)]
    assert [(e.step, e.value) for e in accumulator.Scalars("search/tau")] == [(1, 9.5)]


def test_disabled_logger_does_nothing(tmp_path, capsys):
    logger = RunLogger(tmp_path / "rank1")
    logger.close()
    disabled = RunLogger(tmp_path / "other-rank", enabled=False)
    disabled.log("hidden")
    disabled.scalar("x", 1.0, 0)
    disabled.close()
    assert not (tmp_path / "other-rank").exists()
    assert capsys.readouterr().out == ""


def test_progress_bars_only_on_an_interactive_terminal(tmp_path):
    steps = range(3)
    with RunLogger(tmp_path, tensorboard=False) as logger:
        assert logger.progress(steps) is steps  # pytest captures stdout: not a terminal
    with RunLogger(tmp_path, tensorboard=False, quiet=True) as logger:
        assert logger.progress(steps) is steps


def test_unwritable_run_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(XAutoDLError, match=r"cannot write the run log .*file/run/log.txt"):
        RunLogger(blocker / "run")


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_records_the_schema(tmp_path):
    state = {"epoch": 3, "weights": {"w": torch.arange(4.0)}, "args": {"seed": 1, "name": "GDAS"}, "history": [[1, 2]],
             "shape": torch.Size([2, 3]), "best": None}
    path = save_checkpoint(tmp_path / "checkpoint" / "seed-1-basic.pth", state)
    loaded = load_checkpoint(path)
    assert loaded["schema_version"] == CHECKPOINT_SCHEMA == 1
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
    with pytest.raises(CheckpointError, match="newer than this xautodl understands"):
        load_checkpoint(tmp_path / "future.pth")


def test_checkpoint_into_an_unwritable_place(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*file/ck.pth"):
        save_checkpoint(blocker / "ck.pth", {"epoch": 1})


# ---------------------------------------------------------------- plain data and JSON


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


# ---------------------------------------------------------------- CLI guard and processes


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


def test_single_process_is_rank_zero_of_one():
    assert world_info() == (0, 1)
    assert is_main_process()


def test_channels_last_auto_means_on_for_cpu_and_off_for_cuda():
    from xautodl.errors import ConfigError
    from xautodl.runtime.precision import use_channels_last

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_channels_last("auto", cpu) and not use_channels_last("auto", cuda)
    assert use_channels_last("on", cuda) and not use_channels_last("off", cpu)
    assert use_channels_last(True, cpu) and not use_channels_last(False, cpu)
    with pytest.raises(ConfigError, match="auto, on, off"):
        use_channels_last("yes", cpu)


def test_channels_last_flag_forms():
    import argparse

    from xautodl.runtime.precision import add_speed_flags

    parser = argparse.ArgumentParser()
    add_speed_flags(parser)
    assert parser.parse_args([]).channels_last == "auto"
    assert parser.parse_args(["--channels_last"]).channels_last == "on"
    assert parser.parse_args(["--channels_last", "off"]).channels_last == "off"


# ------------------------------------------------------------------------------------------------ --help
def _entry_parsers():
    import argparse

    from xautodl.commands import basic_main, bench, demo, search, summary, train_a_net
    from xautodl.search.algorithms import ALGORITHMS

    parsers = {f"{name}.py": search.build_parser(name) for name in ALGORITHMS}
    parsers.update({"basic-main.py": basic_main.build_parser(), "main.py": train_a_net.build_parser(),
                    "summary": summary.build_parser(), "demo": demo.build_parser()})
    top = bench._parser()
    parsers["bench"] = top
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers.update({f"bench {name}": sub for name, sub in action.choices.items()})
    return parsers


@pytest.mark.parametrize("name", list(_entry_parsers()))
def test_every_flag_of_every_entry_point_has_a_description_and_shows_its_default(name):
    import argparse

    parser = _entry_parsers()[name]
    undocumented = [action.dest for action in parser._actions
                    if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
                    and not (action.help or "").strip()]
    assert undocumented == [], f"{name}: flags without a description"
    text = "".join(parser.format_help().split())  # argparse wraps lines, at hyphens too
    for action in parser._actions:
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS) and action.help:
            shown = "".join(f"(default: {action.default})".split())
            assert "default" in action.help.lower() or shown in text, (name, action.dest)


def test_a_checkpoint_writer_never_removes_another_live_writers_temporary(tmp_path):
    import socket

    path = tmp_path / "ck.pth"
    live = tmp_path / f".{path.name}~{socket.gethostname()}~{os.getppid()}~inflight.tmp"
    live.write_bytes(b"another writer is filling this")
    save_checkpoint(path, {"epoch": 1})
    save_checkpoint(path, {"epoch": 2})
    assert live.read_bytes() == b"another writer is filling this"
    assert load_checkpoint(path)["epoch"] == 2


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


def test_host_agreements_under_nccl_go_through_a_gloo_group_of_their_own(tmp_path, monkeypatch):
    """The stop check reads its answer on the host: with NCCL as the default group it uses a gloo group beside it
    (CPU tensors, no GPU synchronisation). Simulated on CPU: a one-process gloo job that reports NCCL."""
    import torch.distributed as dist

    from xautodl.runtime import distributed

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert distributed.largest_over_ranks(7) == 7 and distributed._HOST_GROUP is None  # gloo: the default group
        monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
        assert distributed.largest_over_ranks(3) == 3
        assert distributed._HOST_GROUP is not None and distributed._host_group() is distributed._HOST_GROUP
        distributed.barrier()
        lagged = distributed.LaggedMaximum()  # in a job the answer is the value of the call before
        assert [lagged.ask(value) for value in (0, 15, 0, 0)] == [0, 0, 15, 0]
        assert lagged.ask(1) == 0 and lagged.settle() == 1 and lagged.settle() == 0
    finally:
        distributed.cleanup_distributed()
    assert distributed._HOST_GROUP is None and not dist.is_initialized()
    assert distributed.LaggedMaximum().ask(15) == 15, "a single process gets its own value at once"
