"""Run primitives: devices, seeding and RNG state, the run logger, progress bars, the entry points' flags, and
the host agreements of torchrun jobs."""
from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch

from xautodl.errors import ConfigError, XAutoDLError
from xautodl.runtime import (
    RunLogger,
    capture_rng_state,
    is_main_process,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
    select_device,
    world_info,
)


def draw_numbers() -> tuple:
    return random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.randn(), torch.rand(3).tolist()


# -------------------------------------------------------------------------------------------------------------- devices
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


# ------------------------------------------------------------------------------------------------ seeding and RNG state
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


# -------------------------------------------------------------------------------------------------------------- logging
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


# -------------------------------------------------------------------------------------- processes, memory layout, flags
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

def _entry_parsers():
    import argparse

    from xautodl.commands import basic_main, bench, demo, search, summary, train_a_net
    from xautodl.search.registry import ALGORITHMS

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
