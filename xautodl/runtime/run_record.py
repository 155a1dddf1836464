"""A run's files and its record: every path a run writes (`RunFiles`) and the one summary schema every command
writes and reads (`new_record`, `write_record`, `read_record`; the keys are in docs/run-record.md).

A record is a JSON object: the keys every command shares first (`SHARED_KEYS`: schema, command, the run's identity,
seed, whether it finished, the time, the arguments, the versions), with `epochs_done` and `total_epochs` after
`finished` for the commands that train for epochs (`EPOCH_KEYS`: search, basic-main, train-a-net; a multi-trial
search trains nothing), then the per-epoch `history` and the `best` epoch for the commands that train one network per
file (search, basic-main), then one section named after the command (`SECTIONS`) with what only that command knows.
train-a-net trains one network per setting and keeps each setting's epochs and best in its section.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import XAutoDLError
from .serialization import atomic_write_json

RECORD_SCHEMA = 1
SECTIONS = {"search": "search", "basic-main": "basic_main", "train-a-net": "train_a_net", "trials": "trials"}
SHARED_KEYS = ("schema", "command", "run", "seed", "finished", "seconds", "args", "versions")
EPOCH_KEYS = ("epochs_done", "total_epochs")  # the commands that train for epochs (after `finished`)
EPOCH_COMMANDS = ("search", "basic-main", "train-a-net")
ONE_NETWORK_KEYS = ("history", "best")  # search and basic-main; train-a-net keeps them per setting
ONE_NETWORK_COMMANDS = ("search", "basic-main")
CHECKPOINT_FOLDER = "checkpoint"  # under a run directory
SEED_STEM = "seed-{seed}"  # the stem of a search or basic-main run, and of a multi-trial search's run
SEED_RESULT = re.compile(r"seed-(-?\d+)\.json")  # a multi-trial search's record of one run


@dataclass(frozen=True)
class RunFiles:
    """The one run-directory layout: `<run_dir>/<stem>-log.txt`, `<stem>-summary.json`,
    `<run_dir>/checkpoint/<stem>-basic.pth` (last complete epoch), `<stem>-best.pth` and, while a preempted epoch
    waits to be finished, `<stem>-mid-epoch.pth`, the TensorBoard events in `<run_dir>/tensorboard/<stem>/`, and
    what the commands add: the cell drawings `<stem>-cells/`, the trajectory plot `<stem>-trajectory.png` and
    train-a-net's record of an arch and seed `<stem>.json`."""

    run_dir: Path
    stem: str  # "seed-5" for a search or basic-main run; train-a-net: "arch-00042-seed-777-cifar10"

    @classmethod
    def of_seed(cls, run_dir: str | Path, seed: int | str) -> RunFiles:
        """The files of the search or basic-main run of `seed` in `run_dir` ("*": a glob pattern of every seed's)."""
        return cls(Path(run_dir), SEED_STEM.format(seed=seed))

    @classmethod
    def of_arch(cls, run_dir: str | Path, index: int, seed: int | None = None, setting: str | None = None) -> RunFiles:
        """train-a-net's files: `arch-{index:05d}` (its log), `-seed-{seed}` (its record of that seed), and
        `-{setting}` (the checkpoints and events of one setting)."""
        stem = f"arch-{index:05d}" + ("" if seed is None else f"-seed-{seed}") + ("" if setting is None else f"-{setting}")
        return cls(Path(run_dir), stem)

    @staticmethod
    def checkpoint_folder(run_dir: str | Path) -> Path:
        return Path(run_dir) / CHECKPOINT_FOLDER

    @staticmethod
    def seed_checkpoints(run_dir: str | Path) -> list[Path]:
        """The last-epoch checkpoints of the seeds run in `run_dir`."""
        every_seed = RunFiles.of_seed(run_dir, "*")
        return list(every_seed.checkpoint_dir.glob(every_seed.last.name))

    @staticmethod
    def seed_summaries(run_dir: str | Path) -> list[Path]:
        """The summaries of the seeds run in `run_dir`."""
        return list(Path(run_dir).glob(RunFiles.of_seed(run_dir, "*").summary.name))

    @staticmethod
    def seed_results(run_dir: str | Path) -> list[Path]:
        """The records `seed-<seed>.json` of a multi-trial search's folder (one per run)."""
        return [path for path in Path(run_dir).glob(RunFiles.of_seed(run_dir, "*").result.name)
                if SEED_RESULT.fullmatch(path.name)]

    @staticmethod
    def seeds_trajectory(run_dir: str | Path) -> Path:
        """The plot `python -m xautodl.summary` draws of all the seeds of `run_dir` together."""
        return Path(run_dir) / "seeds-trajectory.png"

    @staticmethod
    def run_dir_of_checkpoint(path: Path) -> Path | None:
        """The run directory of a checkpoint file in this layout, None for a file elsewhere."""
        return path.parent.parent if path.parent.name == CHECKPOINT_FOLDER else None

    @property
    def checkpoint_dir(self) -> Path:
        return self.checkpoint_folder(self.run_dir)

    @property
    def last(self) -> Path:
        return self.checkpoint_dir / f"{self.stem}-basic.pth"

    @property
    def best(self) -> Path:
        return self.checkpoint_dir / f"{self.stem}-best.pth"

    @property
    def mid_epoch(self) -> Path:
        """The state of an epoch stopped by a signal after one of its steps (removed once that epoch is done)."""
        return self.checkpoint_dir / f"{self.stem}-mid-epoch.pth"

    @property
    def log(self) -> Path:
        return self.run_dir / f"{self.stem}-log.txt"

    @property
    def summary(self) -> Path:
        return self.run_dir / f"{self.stem}-summary.json"

    @property
    def result(self) -> Path:
        """train-a-net's record of one arch and seed (all its settings)."""
        return self.run_dir / f"{self.stem}.json"

    @property
    def tensorboard(self) -> Path:
        """The run's TensorBoard event folder (one per run, so `tensorboard --logdir <run_dir>/tensorboard` shows
        each seed or setting as its own run)."""
        return self.run_dir / "tensorboard" / self.stem

    @property
    def cells(self) -> Path:
        """The drawings of a NASNet search's final cells."""
        return self.run_dir / f"{self.stem}-cells"

    @property
    def trajectory(self) -> Path:
        """The plot `python -m xautodl.summary` draws of one seed."""
        return self.run_dir / f"{self.stem}-trajectory.png"


def development_build_checkpoint(files: RunFiles) -> Path:
    """Where a development build of train-a-net, before this layout, kept the checkpoint of `files` (only named in
    the line that refuses it)."""
    return files.run_dir / "checkpoints" / f"{files.stem}.pth"


def versions() -> dict[str, str]:
    """The versions a record names: torch and xautodl (the TensorFlow search adds tensorflow)."""
    import torch

    from .. import __version__

    return {"torch": torch.__version__, "xautodl": __version__}


def new_record(command: str, *, run: dict, seed: int, finished: bool, seconds: float, args: dict, section: dict,
               epochs_done: int | None = None, total_epochs: int | None = None, history: list[dict] | None = None,
               best: dict | None = None) -> dict[str, Any]:
    """The record of a run of `command`: the shared keys (with `epochs_done` and `total_epochs` for the commands that
    train for epochs), `history` and `best` for the commands that train one network, then the command's section."""
    if command not in SECTIONS:
        raise ValueError(f"unknown command {command!r}; expected one of {', '.join(SECTIONS)}")
    by_epochs = command in EPOCH_COMMANDS
    if by_epochs != (epochs_done is not None and total_epochs is not None):
        raise ValueError(f"a {command} record {'needs' if by_epochs else 'has no'} epochs_done and total_epochs")
    one_network = command in ONE_NETWORK_COMMANDS
    if one_network != (history is not None and best is not None):
        raise ValueError(f"a {command} record {'needs' if one_network else 'has no'} top-level history and best")
    record = {"schema": RECORD_SCHEMA, "command": command, "run": run, "seed": seed, "finished": finished}
    if by_epochs:
        record.update(epochs_done=epochs_done, total_epochs=total_epochs)
    record.update(seconds=seconds, args=args, versions=versions())
    if one_network:
        record.update(history=history, best=best)
    record[SECTIONS[command]] = section
    return record


def record_keys(command: str) -> tuple[str, ...]:
    """The top-level keys of a `command` record, in their order."""
    shared = SHARED_KEYS[:SHARED_KEYS.index("finished") + 1] + (EPOCH_KEYS if command in EPOCH_COMMANDS else ()) \
        + SHARED_KEYS[SHARED_KEYS.index("finished") + 1:]
    return shared + (ONE_NETWORK_KEYS if command in ONE_NETWORK_COMMANDS else ()) + (SECTIONS[command],)


def write_record(path: Path, record: dict) -> None:
    """Write `record` atomically (a crash leaves the previous one)."""
    atomic_write_json(path, record)


def read_record(path: str | Path, command: str) -> dict[str, Any]:
    """The record of a `command` run in `path`; XAutoDLError, one line, when it is unreadable, of another command,
    of a development build before this schema, or lacks a key of the schema."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise XAutoDLError(f"cannot read the {command} record {path} ({error}); it may be damaged: move it away and "
                           f"{_rerun(command)}") from None
    if not isinstance(record, dict):
        raise XAutoDLError(f"{path} is not a run record (a JSON object of xautodl); expected what a {command} writes")
    if "schema" not in record:
        raise XAutoDLError(f"{path} was written by a development build of xautodl before the run record (schema "
                           f"{RECORD_SCHEMA}); move it away and {_rerun(command)}")
    if record["schema"] != RECORD_SCHEMA:
        raise XAutoDLError(f"{path} is a run record of schema {record['schema']}; this xautodl reads schema "
                           f"{RECORD_SCHEMA}: read it with the xautodl that wrote it")
    if record.get("command") != command:
        raise XAutoDLError(f"{path} is the record of a {record.get('command')} run, not of a {command} run; give "
                           f"what a {command} writes")
    missing = [key for key in record_keys(command) if key not in record]
    if missing:
        raise XAutoDLError(f"{path} is damaged: it lacks {', '.join(missing)}; move it away and "
                           f"{_rerun(command)}")
    return record


def _rerun(command: str) -> str:
    """How a run's record is written again once a bad one is moved away."""
    if command == "trials":
        return "re-run the multi-trial search, which runs that seed again (a seed reproduces its run)"
    return f"re-run the {command}, which rewrites it from the run's checkpoints"
