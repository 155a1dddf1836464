"""Preemption: a loop stopped by SIGTERM / SIGHUP between two of its steps goes on later exactly where it stopped.

Within `EpochLoop.fit` the first SIGTERM / SIGHUP is only noted (`runtime.signals.stop_at_step_boundary`). After
every step but an epoch's last, the processes agree on whether one arrived (under torchrun one step late, without
waiting for each other); if so the loop finishes that step, writes a mid-epoch checkpoint (`RunFiles.mid_epoch`:
the state after that step, every process's meter sums, the step reached) and raises `Preempted`. After an epoch's
last step the epoch is saved as usual and the loop stops before the next one. A re-run draws the batches of the
done steps again without training on them, so the data order and augmentation go on exactly where they stopped,
then puts back the RNG states saved after the last done step, and ends like an uninterrupted run.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch

from ..errors import CheckpointError
from ..optim.meters import DeviceMeter
from .checkpoint import FINAL_CHECKPOINT_ERRORS, load_resume_checkpoint, previous_path, save_checkpoint
from .distributed import LaggedMaximum, all_gather_objects, barrier, largest_over_ranks, world_info
from .logger import RunLogger
from .seeding import restore_rng_state
from .signals import Preempted, StopRequest, signal_name, stop_at_step_boundary


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


def mid_epoch_fields_problem(info: Any) -> str | None:
    """What in a mid-epoch checkpoint's `mid_epoch` entry `Preemption` never writes, or None."""
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


class Preemption:
    """The stop request of a running loop, its mid-epoch checkpoint at `path`, and the redraw of the done steps of
    an epoch resumed from it. `check_finite(metrics, epoch)` and `state_at(epoch, mid_epoch_info)` are the
    skeleton's: a mid-epoch checkpoint is never written of a non-finite state."""

    def __init__(self, path: Path, total_epochs: int, is_main: bool, check_finite: Callable[[dict, int], None],
                 state_at: Callable[[int, dict], dict]) -> None:
        self.path, self.total_epochs, self.is_main = path, total_epochs, is_main
        self.check_finite, self.state_at = check_finite, state_at
        self.request = StopRequest()  # replaced by the live request while `watching()`
        self.resumed: ResumedStep | None = None  # where the loaded mid-epoch checkpoint left its epoch

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Within the block the first SIGTERM / SIGHUP is a stop request the loop acts on at a step boundary."""
        with stop_at_step_boundary(several_processes=world_info()[1] > 1) as self.request:
            yield

    # ---------------------------------------------------------------------------------------------- resume
    def load(self, start: int, steps: int, logger: RunLogger,
             check: Callable[[Path, dict], None]) -> dict | None:
        """The mid-epoch checkpoint that continues a run whose next epoch is `start`, or None: there is none, or
        it cannot be used (damaged, left from an epoch since finished, cut with another number of steps or
        processes), which the log says; the epoch then starts again from its first step."""
        if not (self.path.exists() or previous_path(self.path).exists()):
            return None
        again = f"epoch {start + 1} starts again from its first step"
        try:
            mid = load_resume_checkpoint(self.path, logger=logger, check=check)
        except FINAL_CHECKPOINT_ERRORS:
            raise
        except CheckpointError as err:
            logger.log(f"warning: the mid-epoch checkpoint cannot be used ({err}); {again}")
            return None
        problem = _continuation_problem(mid, start, steps)
        if problem:
            logger.log(f"not resuming from the mid-epoch checkpoint {self.path}: {problem}; {again}")
            return None
        info = mid["mid_epoch"]
        self.resumed = ResumedStep(info["step"], info["meters"][world_info()[0]], float(info["seconds"]), mid["rng"])
        return mid

    def begin_epoch(self, model: Any) -> EpochProgress:
        """The progress of the next epoch as it starts: empty, or what the loaded mid-epoch checkpoint had (its
        meter sums go where `model` lives, the CPU for a model that is not a torch module)."""
        if self.resumed is None:
            return EpochProgress()
        parameter = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
        meter = DeviceMeter()
        meter.load_state_dict(self.resumed.meter, parameter.device if parameter is not None else "cpu")
        return EpochProgress(meter, time.time() - self.resumed.seconds, self.resumed.step)

    # ------------------------------------------------------------------------------------------------ steps
    def steps(self, epoch: int, batches: Iterable, steps: int, progress: EpochProgress) -> Iterator[tuple[int, Any]]:
        """(step, batch) of `epoch` from `progress.first_step` on, after redrawing the done steps' batches; after
        every step but the last, an agreed stop request saves the epoch mid-way and raises Preempted."""
        batch_iterator = iter(batches)
        agreement = LaggedMaximum()  # under torchrun the processes agree one step late, without waiting
        if progress.first_step:
            self._redraw(batch_iterator, progress.first_step)
        for step, batch in zip(range(progress.first_step, steps), batch_iterator):
            yield step, batch
            signum = agreement.ask(self.request.signum)
            if signum and step + 1 < steps:
                agreement.settle()
                self._stop_mid_epoch(epoch, step + 1, steps, progress, signum)
        agreement.settle()

    def _redraw(self, batch_iterator: Iterator, done: int) -> None:
        """Draw the done steps' batches without using them, so that the loaders' random streams advance exactly as
        before, then put back the RNG states saved after the last done step."""
        for _ in zip(range(done), batch_iterator):
            pass
        restore_rng_state(self.resumed.rng)
        self.resumed = None

    def _stop_mid_epoch(self, epoch: int, done: int, steps: int, progress: EpochProgress, signum: int) -> None:
        """Save the state after step `done` of `epoch` (never a non-finite one) and raise Preempted."""
        self.check_finite(progress.meter.read(), epoch)
        meters = all_gather_objects(progress.meter.state_dict())  # rank order: each process resumes its own
        if self.is_main:
            info = {"step": done, "steps": steps, "seconds": progress.seconds(), "meters": meters}
            save_checkpoint(self.path, self.state_at(epoch, info))
        self.request.acted_on = True
        barrier()  # no process ends (which has torchrun signal the others) before the checkpoint is complete
        raise Preempted(f"stopped by {signal_name(signum)} after step {done} of {steps} of epoch {epoch + 1}/"
                        f"{self.total_epochs}, saved in {self.path}; re-running the same command resumes at step "
                        f"{done + 1}", signum)

    # ----------------------------------------------------------------------------------------- epoch ends
    def stop_after_epoch(self, epoch: int, saved_in: Path) -> None:
        """Between two epochs: raise Preempted when a stop request reached any process (one 8-byte all-reduce
        over gloo under torchrun)."""
        if epoch + 1 >= self.total_epochs:
            return
        signum = largest_over_ranks(self.request.signum)
        if signum:
            self.request.acted_on = True
            raise Preempted(f"stopped by {signal_name(signum)} after epoch {epoch + 1}/{self.total_epochs}, saved "
                            f"in {saved_in}; re-running the same command resumes with epoch {epoch + 2}", signum)

    def remove_checkpoint(self) -> None:
        """A finished epoch's checkpoint supersedes every mid-epoch one."""
        for path in (self.path, previous_path(self.path)):
            path.unlink(missing_ok=True)


def _continuation_problem(mid: dict, start: int, steps: int) -> str | None:
    """Why `mid` does not continue a run whose next epoch is `start` with `steps` steps per epoch, or None."""
    info, (_, world_size) = mid["mid_epoch"], world_info()
    if mid["epoch"] != start:
        return f"it holds part of epoch {mid['epoch'] + 1}, and the last complete epoch is {start}"
    if info["steps"] != steps:
        return (f"it stopped after step {info['step']} of {info['steps']} steps per epoch, and this command runs "
                f"{steps} (another --limit_batches or dataset)")
    if len(info["meters"]) != world_size:
        return f"it was written by {len(info['meters'])} processes, and this command runs {world_size}"
    return None
