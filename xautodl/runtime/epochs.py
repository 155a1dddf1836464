"""The epoch / checkpoint skeleton shared by the search loop and the training loop, and the one run-directory layout.

A loop subclasses `EpochLoop` and supplies only its step: `run_epoch(epoch)` (the metrics of one epoch, host
numbers), `record(metrics)` (the history entry: metrics plus whatever the loop adds, logged), `stateful()` (the
objects whose `state_dict` goes into the checkpoint, by key) and `best_entry(epoch, entry)` (what `best` records;
its `best_key` is the score maximised, e.g. the valid accuracy). The skeleton owns the rest:

- the checkpoint schema: `kind`, `schema`, the run's identity (flat keys such as `seed`, `space`, `arch`), `epoch`,
  `total_epochs`, `finished`, one entry per stateful object, `rng`, `history`, `best`, plus the loop's `extra_state`;
- resume from the last complete epoch (`<last>.prev` when the last is damaged), refusing a checkpoint of another
  kind or identity with a message saying what differs;
- the finite-loss check, best-before-last saving, one steps-per-epoch rule and one progress bar;
- preemption: within `fit()` the first SIGTERM / SIGHUP is noted (`runtime.signals.stop_at_step_boundary`); the
  loop finishes its step, writes a mid-epoch checkpoint (`RunFiles.mid_epoch`: the state after that step, the
  epoch's meters, the step reached) and raises `Preempted`; a re-run draws the epoch's batches up to that step
  again without training on them, so the data order and augmentation go on exactly where they stopped, and ends
  like an uninterrupted run. A loop iterates its training steps through `epoch_batches` to get this;
- one process per run: the loop holds an OS lock on `<last>.lock` from its construction to the end of `fit()`
  (see `runtime.runlock`); a second process on the same run stops at once, before it logs or writes anything.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from tqdm import tqdm

from ..errors import CheckpointError, TrainingError, XAutoDLError
from ..optim.meters import DeviceMeter
from .checkpoint import (ForeignCheckpointError, UnsafeCheckpointError, load_resume_checkpoint, previous_path,
                         save_checkpoint)
from .distributed import (LaggedMaximum, all_gather_objects, barrier, broadcast_object, largest_over_ranks,
                          world_info)
from .logger import RunLogger
from .runlock import RunBusyError, hold_run_lock, lock_path, release_run_lock
from .seeding import capture_rng_state, restore_rng_state
from .signals import Preempted, StopRequest, Terminated, signal_name, stop_at_step_boundary

SCHEMA_VERSION = 2  # 1: before the skeleton (search identity at the top level, training identity under "meta")
CHECKPOINT_FOLDER = "checkpoint"  # under a run directory
# Optimizer entries that choose an implementation, not the optimisation; "lr" follows the schedule (its start,
# "initial_lr", is compared instead when the run has a schedule).
_IMPLEMENTATION_KEYS = frozenset({"params", "lr", "initial_lr", "foreach", "fused", "capturable", "differentiable"})


@dataclass(frozen=True)
class RunFiles:
    """The one run-directory layout: `<run_dir>/<stem>-log.txt`, `<stem>-summary.json`,
    `<run_dir>/checkpoint/<stem>-basic.pth` (last complete epoch), `<stem>-best.pth` and, while a preempted epoch
    waits to be finished, `<stem>-mid-epoch.pth`, and the TensorBoard events in `<run_dir>/tensorboard/<stem>/`."""

    run_dir: Path
    stem: str  # "seed-5" for a search or basic-main run; train-a-net: "arch-00042-seed-777-cifar10"

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / CHECKPOINT_FOLDER

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
    def tensorboard(self) -> Path:
        """The run's TensorBoard event folder (one per run, so `tensorboard --logdir <run_dir>/tensorboard` shows
        each seed or setting as its own run)."""
        return self.run_dir / "tensorboard" / self.stem


def move_old_checkpoint(old: Path, new: Path) -> None:
    """Move a checkpoint (and its `.prev`) from where an older xautodl wrote it to its place in `RunFiles`, so
    that the run resumes (train-a-net once wrote `checkpoints/<name>.pth`)."""
    for source, target in ((old, new), (previous_path(old), previous_path(new))):
        if source.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            source.rename(target)


def optimizer_settings(key: str, param_groups: list[dict]) -> dict[str, Any]:
    """The hyperparameters of an optimizer's param groups as flat settings: `<key>.<name>` (`<key>[i].<name>` with
    several groups); the start LR (`initial_lr`, set by the schedule) stands for the LR."""
    settings = {}
    for index, group in enumerate(param_groups):
        owner = key if len(param_groups) == 1 else f"{key}[{index}]"
        settings[f"{owner}.lr"] = group.get("initial_lr", group.get("lr"))
        for name, value in group.items():
            if name not in _IMPLEMENTATION_KEYS:
                settings[f"{owner}.{name}"] = list(value) if isinstance(value, tuple) else value
    return settings


def steps_per_epoch(loader: Any, limit_batches: int = 0) -> int:
    """The steps an epoch takes: the loader's length, or `limit_batches` when that is positive and smaller."""
    steps = len(loader)
    return min(steps, limit_batches) if limit_batches > 0 else steps


def _mid_epoch_fields_problem(info: Any) -> str | None:
    """What in a mid-epoch checkpoint's `mid_epoch` entry `EpochLoop` never writes, or None."""
    if not isinstance(info, dict):
        return f"its mid_epoch entry is {type(info).__name__}, not a dict"
    step, steps, meters = info.get("step"), info.get("steps"), info.get("meters")
    if type(step) is not int or type(steps) is not int or not 0 < step < steps:
        return f"it says it stopped after step {step!r} of {steps!r}"
    if not isinstance(info.get("seconds"), (int, float)):
        return f"its mid-epoch seconds are {info.get('seconds')!r}"
    if not isinstance(meters, list) or not meters or not all(
            isinstance(meter, dict) and isinstance(meter.get("sums"), dict) and isinstance(meter.get("counts"), dict)
            for meter in meters):
        return "its mid-epoch meters are not one meter state per process"
    return None


@dataclass
class ResumedStep:
    """Where a mid-epoch checkpoint left its epoch: the steps done, this process's meter sums of them, the seconds
    they took, and the RNG states to put back once the batches of those steps are drawn again."""

    step: int
    meter: dict
    seconds: float
    rng: dict


@dataclass
class EpochProgress:
    """An epoch in progress: its meter, when it started (earlier by the seconds a preempted session spent on it)
    and the step it starts at (0, or where a mid-epoch checkpoint stopped)."""

    meter: DeviceMeter = field(default_factory=DeviceMeter)
    started: float = field(default_factory=time.time)
    first_step: int = 0

    def seconds(self) -> float:
        return time.time() - self.started


class EpochLoop:
    """Checkpointed epochs of a loop (module docstring); subclasses define the step."""

    kind = "epochs"  # the checkpoint's `kind`
    best_key = "acc"  # the key of `best` (and of `best_entry`) holding the score the best checkpoint maximises

    def __init__(self, files: RunFiles, total_epochs: int, logger: RunLogger, identity: dict, keep_best: bool = True,
                 is_main: bool = True, limit_batches: int = 0, progress: bool = True, print_freq: int = 0,
                 allow_new_settings: bool = False) -> None:
        self.last_path, self.best_path = files.last, files.best if keep_best else None
        self.mid_epoch_path = files.mid_epoch
        self.event_folder = files.tensorboard  # the logger's run: its TensorBoard folder and wandb run
        self.wandb_run_id: str | None = None  # kept in the checkpoints, so that a resumed run continues its wandb run
        self.total_epochs, self.logger, self.identity = total_epochs, logger, dict(identity)
        self.is_main, self.limit_batches, self.progress, self.print_freq = is_main, limit_batches, progress, print_freq
        self.history: list[dict] = []
        self.best: dict = {"epoch": -1, self.best_key: -1.0}
        self.start_epoch = 0
        self.settings_change: dict[str, list] = {}  # name -> [checkpoint's value, this command's], on resume
        self.allow_new_settings = allow_new_settings  # --resume_with_new_settings: continue despite other settings
        self._resumed_step: ResumedStep | None = None  # where a mid-epoch checkpoint left `start_epoch`
        self._stop = StopRequest()  # replaced by the live request while `fit()` runs
        self._lock = self._take_run_lock()

    def _take_run_lock(self) -> Path | None:
        """The main process locks the run; every process stops with the same line when another process holds it."""
        lock, refusal = None, None
        if self.is_main:
            try:
                lock = hold_run_lock(lock_path(self.last_path), self.last_path.parent.parent)
            except RunBusyError as error:
                refusal = str(error)
        refusal = broadcast_object(refusal)
        if refusal is not None:
            raise RunBusyError(refusal)
        return lock

    # ------------------------------------------------------------------------------------ what a loop supplies
    def stateful(self) -> dict[str, Any]:
        """Objects with `state_dict()` / `load_state_dict()`, by checkpoint key (the model under "model")."""
        raise NotImplementedError

    def run_epoch(self, epoch: int) -> dict:
        """The metrics of epoch `epoch` (host numbers); its training steps come from `epoch_batches`."""
        raise NotImplementedError

    def epoch_steps(self) -> int:
        """The training steps of one epoch (`steps(<the training loader>)`)."""
        raise NotImplementedError

    def record(self, metrics: dict) -> dict:
        """The history entry of a finished epoch (metrics plus what the loop adds); logs it."""
        return metrics

    def best_entry(self, epoch: int, entry: dict) -> dict | None:
        """What `best` records of epoch `epoch` (holding `best_key`), or None when the loop has no best."""
        raise NotImplementedError

    def extra_state(self) -> dict:
        """Plain data the loop adds to every checkpoint (e.g. the genotype, the arguments)."""
        return {}

    def on_epoch_end(self, epoch: int) -> None:
        """Called on every process after an epoch is recorded, before its checkpoint is written."""

    def on_saved(self, epoch: int) -> None:
        """Called on the main process after an epoch's checkpoints are written (e.g. to write a summary)."""

    # ------------------------------------------------------------------------------------------------- state
    def state_dict(self, epoch: int, mid_epoch: dict | None = None) -> dict:
        """The checkpoint after epoch `epoch`, or, with `mid_epoch` (`step`, `steps`, `seconds`, `meters`: one
        meter state per process), within it: `epoch` is then the epoch in progress and `history` holds the ones
        before it."""
        return {
            "kind": self.kind,
            "schema": SCHEMA_VERSION,
            **self.identity,
            "epoch": epoch,
            "total_epochs": self.total_epochs,
            "finished": mid_epoch is None and epoch + 1 >= self.total_epochs,
            **({} if mid_epoch is None else {"mid_epoch": mid_epoch}),
            **{key: obj.state_dict() for key, obj in self.stateful().items()},
            "rng": capture_rng_state(),
            "history": self.history,
            "best": self.best,
            "settings": self.run_settings(),
            **({"wandb_run_id": self.wandb_run_id} if self.wandb_run_id else {}),
            **self.extra_state(),
        }

    def run_settings(self) -> dict[str, Any]:
        """The optimisation settings a resumed run must share (unless --resume_with_new_settings): every
        optimizer's hyperparameters (its start LR, momentum, weight decay, betas, ...), the schedule's warmup and
        final LR and the loop's tau range (`loop_settings`). The epochs are not among them: more epochs extend a run."""
        settings: dict[str, Any] = {}
        for key, obj in self.stateful().items():
            if isinstance(obj, torch.optim.Optimizer):
                settings.update(optimizer_settings(key, obj.state_dict()["param_groups"]))
        return {**settings, **self.loop_settings()}

    def loop_settings(self) -> dict[str, Any]:
        """Settings of the loop itself, beside its optimizers', that a resumed run must share (the schedule's, the
        tau range): plain values by name."""
        return {}

    def _stored_settings(self, state: dict) -> dict[str, Any]:
        """`run_settings()` as the checkpoint's run had them (older checkpoints: their optimizers' only)."""
        stored = dict(state.get("settings") or {})
        for key, obj in self.stateful().items():
            groups = (state.get(key) or {}).get("param_groups") if isinstance(obj, torch.optim.Optimizer) else None
            if isinstance(groups, list):
                stored.update(optimizer_settings(key, groups))
        return stored

    def resume(self) -> bool:
        """Load the last complete epoch's checkpoint, or the mid-epoch one that continues it, if there is one;
        True when resumed."""
        last = load_resume_checkpoint(self.last_path, logger=self.logger, check=self._check_resumable)
        mid = self._mid_epoch_state(last)
        state, file = (last, self.last_path) if mid is None else (mid, self.mid_epoch_path)
        if state is None:
            return False
        epoch = int(state["epoch"])
        done = epoch if mid is not None else epoch + 1  # complete epochs
        if done > self.total_epochs or (mid is not None and epoch >= self.total_epochs):
            held = f"{done} epochs" if mid is None else f"{done} epochs and part of epoch {epoch + 1}"
            raise CheckpointError(f"{file} already holds {held}, more than the {self.total_epochs} "
                                  f"this command trains (warmup included); pass at least as many --epochs to extend "
                                  f"or inspect that run, or another --save_dir to start a shorter one")
        for key, obj in self.stateful().items():
            if key == "model":
                self._load_model(obj, state["model"])
            elif state.get(key):
                obj.load_state_dict(state[key])
        self.history, self.best = list(state["history"]), dict(state["best"])
        self.wandb_run_id = state["wandb_run_id"] if isinstance(state.get("wandb_run_id"), str) else None
        self.start_epoch = done
        if mid is None:
            restore_rng_state(state["rng"])
            self.logger.log(f"resumed from {self.last_path} after epoch {self.start_epoch}")
        else:  # the RNG states go back once the done steps' batches are drawn again (`epoch_batches`)
            info = mid["mid_epoch"]
            rank, _ = world_info()
            self._resumed_step = ResumedStep(info["step"], info["meters"][rank], float(info["seconds"]), mid["rng"])
            self.logger.log(f"resumed from {self.mid_epoch_path} in epoch {epoch + 1} after step {info['step']} of "
                            f"{info['steps']}")
        if self.settings_change:
            self._apply_new_optimizer_settings()
            changes = ", ".join(f"{name} {old} -> {new}" for name, (old, new) in sorted(self.settings_change.items()))
            self.logger.log(f"continuing with new settings (--resume_with_new_settings): {changes}")
        return True

    def _mid_epoch_state(self, last: dict | None) -> dict | None:
        """The mid-epoch checkpoint that continues `last` (the last complete epoch's state, None before the first),
        or None: there is none, or it cannot be used (damaged, left from an epoch since finished, cut with another
        number of steps or processes), which the log says; the epoch then starts again from its first step."""
        path = self.mid_epoch_path
        if not (path.exists() or previous_path(path).exists()):
            return None
        start = 0 if last is None else int(last["epoch"]) + 1
        again = f"epoch {start + 1} starts again from its first step"
        try:
            mid = load_resume_checkpoint(path, logger=self.logger, check=self._check_resumable)
        except (UnsafeCheckpointError, ForeignCheckpointError):
            raise
        except CheckpointError as err:
            self.logger.log(f"warning: the mid-epoch checkpoint cannot be used ({err}); {again}")
            return None
        problem = self._mid_epoch_problem(mid, start)
        if problem:
            self.logger.log(f"not resuming from the mid-epoch checkpoint {path}: {problem}; {again}")
            return None
        return mid

    def _mid_epoch_problem(self, mid: dict, start: int) -> str | None:
        """Why `mid` does not continue a run whose next epoch is `start`, or None."""
        info, (_, world_size) = mid["mid_epoch"], world_info()
        if mid["epoch"] != start:
            return f"it holds part of epoch {mid['epoch'] + 1}, and the last complete epoch is {start}"
        if info["steps"] != self.epoch_steps():
            return (f"it stopped after step {info['step']} of {info['steps']} steps per epoch, and this command runs "
                    f"{self.epoch_steps()} (another --limit_batches or dataset)")
        if len(info["meters"]) != world_size:
            return f"it was written by {len(info['meters'])} processes, and this command runs {world_size}"
        return None

    def _check_resumable(self, file: Path, state: dict) -> None:
        """ForeignCheckpointError for another run's checkpoint; CheckpointError for fields this tool never writes
        (a tampered or foreign file: the caller then tries `.prev`)."""
        self._check_same_run(state)
        problem = self._unwritten_fields(state)
        if problem:
            raise CheckpointError(f"checkpoint {file} is not one this tool wrote ({problem})")
        self._check_same_settings(state)

    def _check_same_settings(self, state: dict) -> None:
        """ForeignCheckpointError naming every optimisation setting that differs, unless the command line asked to
        continue with the new ones (then they are kept in `settings_change`)."""
        current, stored = self.run_settings(), self._stored_settings(state)
        changed = {name: [stored[name], value] for name, value in current.items()
                   if name in stored and stored[name] != value}
        if not changed:
            return
        if not self.allow_new_settings:
            listed = "; ".join(f"{name} {old} (checkpoint) vs {new} (this command)" for name, (old, new)
                               in sorted(changed.items()))
            raise ForeignCheckpointError(
                f"{self.last_path} was trained with other settings: {listed}; pass another --save_dir or seed to "
                f"start a new run, or --resume_with_new_settings to continue this one with the new settings (the "
                f"change is recorded in its history)")
        self.settings_change = changed

    def _unwritten_fields(self, state: dict) -> str | None:
        """What in `state` no `state_dict` of this skeleton writes, or None."""
        epoch, total = state.get("epoch"), state.get("total_epochs", self.total_epochs)
        in_progress = "mid_epoch" in state
        if type(epoch) is not int or epoch < 0:
            return f"its epoch is {epoch!r}, not an epoch number"
        if type(total) is not int or epoch >= total:
            return f"its epoch {epoch + 1} lies beyond its total of {total!r} epochs"
        done = epoch if in_progress else epoch + 1
        if "finished" in state and state["finished"] is not (not in_progress and done >= total):
            return f"it says finished={state['finished']!r} after epoch {epoch + 1} of {total}"
        history = state.get("history")
        if not isinstance(history, list) or not all(isinstance(entry, dict) for entry in history):
            return f"its history is {type(history).__name__} {str(history)[:60]}, not a list of epoch entries"
        if state.get("schema") == SCHEMA_VERSION and len(history) != done:
            return f"its history holds {len(history)} epochs, its epoch counter {done}"
        if in_progress:
            problem = _mid_epoch_fields_problem(state["mid_epoch"])
            if problem:
                return problem
        for key in ("best", "rng"):
            if not isinstance(state.get(key), dict):
                return f"its {key} is {type(state.get(key)).__name__}, not a dict"
        model = self.stateful().get("model")
        stored = state.get("model")
        if model is not None:
            if not isinstance(stored, dict):
                return f"its model is {type(stored).__name__}, not a state dict"
            own = model.state_dict()
            for name, tensor in stored.items():
                if not isinstance(tensor, torch.Tensor):
                    return f"its model entry {name} is {type(tensor).__name__}, not a tensor"
                if name in own and tensor.shape != own[name].shape:
                    return (f"its {name} has shape {list(tensor.shape)} where the network this run's settings build "
                            f"has {list(own[name].shape)}")
        return None

    def _apply_new_optimizer_settings(self) -> None:
        """Loading an optimizer's state brought the checkpoint's hyperparameters back: put this command's in."""
        for key, obj in self.stateful().items():
            if not isinstance(obj, torch.optim.Optimizer):
                continue
            for index, group in enumerate(obj.param_groups):
                for name, (_, new) in self.settings_change.items():
                    owner, _, hyper = name.rpartition(".")
                    if owner in (key, f"{key}[{index}]"):
                        group["initial_lr" if hyper == "lr" and "initial_lr" in group else hyper] = (
                            tuple(new) if isinstance(group.get(hyper), tuple) else new)

    def _check_same_run(self, state: dict) -> None:
        if state.get("kind") != self.kind:
            raise ForeignCheckpointError(
                f"{self.last_path} is a {state.get('kind')} checkpoint, not a {self.kind} one; use another output "
                f"directory (--save_dir) or move the file away")
        stored = {**state.get("meta", {}), **state}  # schema 1 kept a training run's identity under "meta"
        differing = sorted(key for key, value in self.identity.items() if key in stored and stored[key] != value)
        if differing:
            found = ", ".join(f"{key}={stored[key]}" for key in differing)
            wanted = ", ".join(f"{key}={self.identity[key]}" for key in differing)
            raise ForeignCheckpointError(
                f"{self.last_path} belongs to another run ({found}), not to this one ({wanted}); use another output "
                f"directory (--save_dir) or move the file away")

    def _load_model(self, model: torch.nn.Module, model_state: dict) -> None:
        try:
            model.load_state_dict(model_state)
        except RuntimeError as err:
            problem = str(err).split("\n\t", 1)[-1].replace("\n\t", " ")
            raise CheckpointError(
                f"{self.last_path} holds a network that does not fit the one this command builds ({problem[:400]}). "
                f"It was written with other model settings or by an older xautodl (NASNet search supernets gained "
                f"the original's final BN + ReLU, `lastact`, in 2.0.0.dev0); pass another --save_dir (or seed) to "
                f"start a new run, or move that checkpoint away") from None

    # -------------------------------------------------------------------------------------------------- loop
    def steps(self, loader: Any) -> int:
        return steps_per_epoch(loader, self.limit_batches)

    def progress_bar(self, steps: int, epoch: int, done: int = 0) -> tqdm:
        return tqdm(total=steps, initial=done, desc=f"epoch {epoch + 1}/{self.total_epochs}", leave=False,
                    disable=None if self.progress and self.is_main else True)

    def begin_epoch(self, epoch: int) -> EpochProgress:
        """The progress of `epoch` as it starts: empty, or what a mid-epoch checkpoint of it had."""
        resumed = self._resumed_step if epoch == self.start_epoch else None
        if resumed is None:
            return EpochProgress()
        meter = DeviceMeter()
        meter.load_state_dict(resumed.meter, self._device())
        return EpochProgress(meter, time.time() - resumed.seconds, resumed.step)

    def epoch_batches(self, epoch: int, batches: Iterable, progress: EpochProgress) -> Iterator[tuple[int, Any]]:
        """(step, batch) for the training steps of `epoch` from `progress.first_step` on; the loop trains on each
        batch and adds it to `progress.meter`. Shows the progress bar and the `print_freq` lines.

        After every step but the epoch's last, a stop request (SIGTERM / SIGHUP) agreed by all processes (under
        torchrun one step after it arrived: they agree without waiting for each other) ends the epoch: its state is
        saved as a mid-epoch checkpoint and Preempted raised. (After the last step the epoch is finished and saved
        as usual, and `fit` stops before the next one.) An epoch resumed from a mid-epoch
        checkpoint first draws the batches of its done steps without yielding them, so that the loaders' random
        streams advance exactly as before, then puts back the RNG states saved after its last done step."""
        steps = self.epoch_steps()
        bar = self.progress_bar(steps, epoch, progress.first_step)
        batch_iterator = iter(batches)
        agreement = LaggedMaximum()  # under torchrun the processes agree one step late, without waiting
        try:
            if progress.first_step:
                for _ in zip(range(progress.first_step), batch_iterator):
                    pass
                restore_rng_state(self._resumed_step.rng)
                self._resumed_step = None
            for step, batch in zip(range(progress.first_step, steps), batch_iterator):
                yield step, batch
                bar.update(1)
                self.log_step(bar, epoch, step, steps, progress.meter.format())
                signum = agreement.ask(self._stop.signum)
                if signum and step + 1 < steps:
                    agreement.settle()
                    self._stop_mid_epoch(epoch, step + 1, steps, progress, signum)
            agreement.settle()
        finally:
            bar.close()

    def _device(self) -> torch.device:
        """Where the model (and so the meters' sums) lives; the CPU for a model that is not a torch module."""
        model = self.stateful().get("model")
        parameter = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
        return parameter.device if parameter is not None else torch.device("cpu")

    def _agreed_stop_signal(self) -> int:
        """The signal that asked this run to stop, as every process agrees now (0: none); one 8-byte all-reduce
        over gloo under torchrun (between epochs; after each step `epoch_batches` asks without waiting)."""
        return largest_over_ranks(self._stop.signum)

    def _stop_mid_epoch(self, epoch: int, done: int, steps: int, progress: EpochProgress, signum: int) -> None:
        """Save the state after step `done` of `epoch` (never a non-finite one) and raise Preempted."""
        self.check_finite(progress.meter.read(), epoch)
        meters = all_gather_objects(progress.meter.state_dict())  # rank order: each process resumes its own
        if self.is_main:
            info = {"step": done, "steps": steps, "seconds": progress.seconds(), "meters": meters}
            save_checkpoint(self.mid_epoch_path, self.state_dict(epoch, mid_epoch=info))
        self._stop.acted_on = True
        barrier()  # no process ends (which has torchrun signal the others) before the checkpoint is complete
        raise Preempted(f"stopped by {signal_name(signum)} after step {done} of {steps} of epoch {epoch + 1}/"
                        f"{self.total_epochs}, saved in {self.mid_epoch_path}; re-running the same command resumes "
                        f"at step {done + 1}", signum)

    def _remove_mid_epoch(self) -> None:
        """A finished epoch's checkpoint supersedes every mid-epoch one."""
        for path in (self.mid_epoch_path, previous_path(self.mid_epoch_path)):
            path.unlink(missing_ok=True)

    def log_step(self, bar: tqdm, epoch: int, step: int, steps: int, text: str) -> None:
        """A plain log line every `print_freq` steps when no progress bar shows (logs of batch jobs)."""
        if bar.disable and self.is_main and self.print_freq and (step + 1) % self.print_freq == 0:
            self.logger.log(f"epoch {epoch + 1} step {step + 1}/{steps} {text}")

    def check_finite(self, metrics: dict, epoch: int) -> None:
        """Stop before anything of a non-finite epoch is saved: a loss, or any parameter, buffer (BN statistics)
        or alpha of the model; the message names the checkpoint that really is good."""
        for key, value in metrics.items():
            if key.endswith("_loss") and isinstance(value, float) and not math.isfinite(value):
                raise TrainingError(f"the {key.replace('_', ' ')} became {value} in epoch {epoch + 1}; the run stopped "
                                    f"and saved nothing of that epoch; {self._good_checkpoint()}. Try a smaller "
                                    f"learning rate.")
        model = self.stateful().get("model")
        tensors = [t for t in model.state_dict().values() if t.is_floating_point()] if model is not None else []
        if tensors and not bool(torch.stack([t.isfinite().all() for t in tensors]).all()):  # one host read
            broken = next(name for name, t in model.state_dict().items() if t.is_floating_point()
                          and not bool(t.isfinite().all()))
            raise TrainingError(f"{broken} (and maybe more of the model) became non-finite in epoch {epoch + 1} while "
                                f"its losses were finite; the run stopped and saved nothing of that epoch; "
                                f"{self._good_checkpoint()}. Try a smaller learning rate.")

    def _good_checkpoint(self) -> str:
        """Where a re-run resumes from: the last complete epoch's checkpoint (`.prev` when this run resumed from it
        and the last one was moved aside as damaged), or none yet."""
        kept = next((path for path in (self.last_path, previous_path(self.last_path)) if path.is_file()), None)
        if self.history and kept is not None:
            return f"the last good checkpoint, {kept} (epoch {len(self.history)}), is kept and a re-run resumes from it"
        return "there is no good checkpoint yet" + ("" if self.history else " (this was the run's first epoch)")

    def fit(self) -> list[dict]:
        """Resume, then run, record and checkpoint the remaining epochs; returns the history. A SIGTERM / SIGHUP
        stops it saved at the next step boundary (`Preempted`). The run's lock is given back at the end, however
        `fit` ends."""
        try:
            with stop_at_step_boundary() as self._stop:
                try:
                    return self._fit()
                except Exception as err:
                    if self._stop.signum and world_info()[1] > 1 and not isinstance(err, XAutoDLError):
                        # torchrun stops the other processes with SIGTERM when one of them fails; the collective
                        # of the step in progress then fails for want of that process. That is the stop, not a bug.
                        raise Terminated(self._stop.signum) from None
                    raise
        finally:
            if self._lock is not None:
                release_run_lock(self._lock)

    def _fit(self) -> list[dict]:
        self.resume()
        self.wandb_run_id = self.logger.begin_run(self.wandb_run_id, run=self.event_folder)
        for epoch in range(self.start_epoch, self.total_epochs):
            metrics = self.run_epoch(epoch)
            self.check_finite(metrics, epoch)
            entry = self.record(metrics)
            if self.settings_change and epoch == self.start_epoch:
                entry = {**entry, "settings_changed": {name: list(pair) for name, pair in self.settings_change.items()}}
            self.history.append(entry)
            self.on_epoch_end(epoch)
            candidate = self.best_entry(epoch, entry)
            is_best = candidate is not None and candidate[self.best_key] > self.best.get(self.best_key, -math.inf)
            if is_best:
                self.best = candidate
            if self.is_main:
                state = self.state_dict(epoch)
                # Best before last: a crash between the two writes then repeats this epoch and rewrites both,
                # instead of resuming past an epoch whose best checkpoint was never written.
                if is_best and self.best_path is not None:
                    save_checkpoint(self.best_path, state)
                save_checkpoint(self.last_path, state)
                self.logger.checkpointed(epoch, run=self.event_folder)
                self._remove_mid_epoch()
                self.on_saved(epoch)
            if epoch + 1 < self.total_epochs:
                signum = self._agreed_stop_signal()
                if signum:
                    self._stop.acted_on = True
                    raise Preempted(f"stopped by {signal_name(signum)} after epoch {epoch + 1}/{self.total_epochs}, "
                                    f"saved in {self.last_path}; re-running the same command resumes with epoch "
                                    f"{epoch + 2}", signum)
        return self.history
