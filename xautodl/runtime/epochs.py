"""The epoch skeleton shared by the search loop and the training loop (the run's files: `runtime.run_record.RunFiles`).

A loop subclasses `EpochLoop`, hands it its training loader and the settings a resumed run must share, and
supplies its step, `run_epoch(epoch)` (one epoch's metrics; its training steps come from `epoch_batches`), and
five hooks: `stateful()`, `record(metrics)`, `best_entry(epoch, entry)`, `extra_state()`, `on_saved(epoch)`. The
skeleton owns the epochs, the finite check, best-before-last saving, the steps per epoch, the progress bar and the
checkpoint's fields: `schema_version` (`runtime.checkpoint`), `kind`, the run's identity (flat keys such as `seed`,
`arch`), `epoch`, `total_epochs`, `finished`, one entry per stateful object, `rng`, `history`, `best`, `settings`,
the loop's extra state and, mid-epoch, `mid_epoch`. Beside it: `runtime.resume_policy` (which checkpoint resumes
the run), `runtime.preemption` (stop saved at a step boundary, go on exactly there) and `runtime.runlock` (one
process per run).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import torch
from tqdm import tqdm

from ..errors import TrainingError
from .checkpoint import save_checkpoint
from .logger import RunLogger
from .preemption import EpochProgress, Preemption
from .resume_policy import ResumePolicy, run_settings, where_a_rerun_resumes
from .run_record import RunFiles
from .runlock import lock_run, release_run_lock
from .seeding import capture_rng_state


def steps_per_epoch(loader: Any, limit_batches: int = 0) -> int:
    """The steps an epoch takes: the loader's length, or `limit_batches` when that is positive and smaller."""
    steps = len(loader)
    return min(steps, limit_batches) if limit_batches > 0 else steps


@dataclass(frozen=True)
class EpochOptions:
    """How the epochs of a run go, as its command line says."""

    total_epochs: int
    limit_batches: int = 0  # at most this many steps per epoch (0: the whole loader)
    progress: bool = True  # a progress bar on the main process (plain `print_freq` lines when it is off)
    print_freq: int = 0
    keep_best: bool = True  # also keep the best epoch's checkpoint
    is_main: bool = True  # the process that logs and writes files
    allow_new_settings: bool = False  # --resume_with_new_settings: continue despite other settings


class EpochLoop:
    """Checkpointed epochs of a loop (module docstring); subclasses define the step."""

    kind = "epochs"  # the checkpoint's `kind`
    best_key = "acc"  # the key of `best` (and of `best_entry`) holding the score the best checkpoint maximises

    def __init__(self, files: RunFiles, identity: dict, logger: RunLogger, train_loader: Any, options: EpochOptions,
                 loop_settings: dict[str, Any]) -> None:
        self.files, self.identity, self.logger, self.options = files, dict(identity), logger, options
        self.train_loader, self.loop_settings = train_loader, dict(loop_settings)  # plain values by name
        self.total_epochs, self.is_main = options.total_epochs, options.is_main
        self.wandb_run_id: str | None = None  # kept in the checkpoints, so that a resumed run continues its wandb run
        self.history: list[dict] = []
        self.best: dict = {"epoch": -1, self.best_key: -1.0}
        self.start_epoch = 0
        self.settings_change: dict[str, list] = {}  # name -> [checkpoint's value, this command's], on resume
        self.preemption = Preemption(files.mid_epoch, self.total_epochs, self.is_main, self.check_finite,
                                     self.state_dict)
        self._lock = lock_run(self.files.last, self.files.run_dir, self.is_main)

    # ------------------------------------------------------------------------------------ what a loop supplies
    def run_epoch(self, epoch: int) -> dict:
        """The metrics of epoch `epoch` (host numbers); its training steps come from `epoch_batches`."""
        raise NotImplementedError

    def stateful(self) -> dict[str, Any]:
        """Objects with `state_dict()` / `load_state_dict()`, by checkpoint key (the model under "model")."""
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

    def on_saved(self, epoch: int) -> None:
        """Called on the main process after an epoch's checkpoints are written (e.g. to write a summary)."""

    # ------------------------------------------------------------------------------------------------- state
    def state_dict(self, epoch: int, mid_epoch: dict | None = None) -> dict:
        """The checkpoint after epoch `epoch`, or, with `mid_epoch` (`step`, `steps`, `seconds`, `meters`: one
        meter state per process), within it: `epoch` is then the epoch in progress and `history` holds the ones
        before it."""
        stateful = self.stateful()
        return {
            "kind": self.kind,
            **self.identity,
            "epoch": epoch,
            "total_epochs": self.total_epochs,
            "finished": mid_epoch is None and epoch + 1 >= self.total_epochs,
            **({} if mid_epoch is None else {"mid_epoch": mid_epoch}),
            **{key: obj.state_dict() for key, obj in stateful.items()},
            "rng": capture_rng_state(),
            "history": self.history,
            "best": self.best,
            "settings": run_settings(stateful, self.loop_settings),
            **({"wandb_run_id": self.wandb_run_id} if self.wandb_run_id else {}),
            **self.extra_state(),
        }

    def resume(self) -> bool:
        """Load the last complete epoch's checkpoint, or the mid-epoch one that continues it, if there is one;
        True when resumed."""
        stateful = self.stateful()
        policy = ResumePolicy(self.kind, self.identity, self.files.last, self.total_epochs,
                              self.options.allow_new_settings, stateful, run_settings(stateful, self.loop_settings))
        last = policy.load_last(self.logger)
        start = 0 if last is None else int(last["epoch"]) + 1  # complete epochs
        mid = self.preemption.load(start, self.epoch_steps(), self.logger, policy.check)
        state, file = (last, self.files.last) if mid is None else (mid, self.files.mid_epoch)
        if state is None:
            return False
        policy.restore(state, file, start, self.logger)
        self.history, self.best, self.start_epoch = list(state["history"]), dict(state["best"]), start
        self.settings_change = policy.settings_change
        self.wandb_run_id = state["wandb_run_id"] if isinstance(state.get("wandb_run_id"), str) else None
        return True

    # -------------------------------------------------------------------------------------------------- loop
    def steps(self, loader: Any) -> int:
        return steps_per_epoch(loader, self.options.limit_batches)

    def epoch_steps(self) -> int:
        """The training steps of one epoch."""
        return self.steps(self.train_loader)

    def progress_bar(self, steps: int, epoch: int, done: int = 0) -> tqdm:
        return tqdm(total=steps, initial=done, desc=f"epoch {epoch + 1}/{self.total_epochs}", leave=False,
                    disable=None if self.options.progress and self.is_main else True)

    def begin_epoch(self) -> EpochProgress:
        """The progress of the next epoch as it starts: empty, or what a mid-epoch checkpoint of it had."""
        return self.preemption.begin_epoch(self.stateful().get("model"))

    def epoch_batches(self, epoch: int, batches: Iterable, progress: EpochProgress) -> Iterator[tuple[int, Any]]:
        """(step, batch) for the training steps of `epoch` from `progress.first_step` on; the loop trains on each
        batch and adds it to `progress.meter`. Shows the progress bar and the `print_freq` lines; a stop request
        ends the epoch saved at a step boundary (`runtime.preemption`)."""
        steps = self.epoch_steps()
        bar = self.progress_bar(steps, epoch, progress.first_step)
        try:
            for step, batch in self.preemption.steps(epoch, batches, steps, progress):
                yield step, batch
                bar.update(1)
                self.log_step(bar, epoch, step, steps, progress.meter.format())
        finally:
            bar.close()

    def log_step(self, bar: tqdm, epoch: int, step: int, steps: int, text: str) -> None:
        """A plain log line every `print_freq` steps when no progress bar shows (logs of batch jobs)."""
        print_freq = self.options.print_freq
        if bar.disable and self.is_main and print_freq and (step + 1) % print_freq == 0:
            self.logger.log(f"epoch {epoch + 1} step {step + 1}/{steps} {text}")

    def check_finite(self, metrics: dict, epoch: int) -> None:
        """Stop before anything of a non-finite epoch is saved: a loss, or any parameter, buffer (BN statistics)
        or alpha of the model; the message names the checkpoint that really is good."""
        resumes = where_a_rerun_resumes(self.files.last, len(self.history))
        kept = f"the run stopped and saved nothing of that epoch; {resumes}"
        for key, value in metrics.items():
            if key.endswith("_loss") and isinstance(value, float) and not math.isfinite(value):
                raise TrainingError(f"the {key.replace('_', ' ')} became {value} in epoch {epoch + 1}; {kept}. Try "
                                    f"a smaller learning rate.")
        model = self.stateful().get("model")
        tensors = [t for t in model.state_dict().values() if t.is_floating_point()] if model is not None else []
        if tensors and not bool(torch.stack([t.isfinite().all() for t in tensors]).all()):  # one host read
            broken = next(name for name, t in model.state_dict().items() if t.is_floating_point()
                          and not bool(t.isfinite().all()))
            raise TrainingError(f"{broken} (and maybe more of the model) became non-finite in epoch {epoch + 1} while "
                                f"its losses were finite; {kept}. Try a smaller learning rate.")

    def fit(self) -> list[dict]:
        """Resume, then run, record and checkpoint the remaining epochs; returns the history. A SIGTERM / SIGHUP
        stops it saved at the next step boundary (`Preempted`). The run's lock is given back at the end, however
        `fit` ends."""
        try:
            with self.preemption.watching():
                return self._fit()
        finally:
            if self._lock is not None:
                release_run_lock(self._lock)

    def _fit(self) -> list[dict]:
        self.resume()
        self.wandb_run_id = self.logger.begin_run(self.wandb_run_id, run=self.files.tensorboard)
        for epoch in range(self.start_epoch, self.total_epochs):
            metrics = self.run_epoch(epoch)
            self.check_finite(metrics, epoch)
            entry = self.record(metrics)
            if self.settings_change and epoch == self.start_epoch:
                entry = {**entry, "settings_changed": {name: list(pair) for name, pair in self.settings_change.items()}}
            self.history.append(entry)
            candidate = self.best_entry(epoch, entry)
            is_best = candidate is not None and candidate[self.best_key] > self.best.get(self.best_key, -math.inf)
            if is_best:
                self.best = candidate
            if self.is_main:
                self._save(epoch, is_best)
            self.preemption.stop_after_epoch(epoch, self.files.last)
        return self.history

    def _save(self, epoch: int, is_best: bool) -> None:
        """Write epoch `epoch`'s checkpoints, best before last: a crash between the two writes then repeats this
        epoch and rewrites both, instead of resuming past an epoch whose best checkpoint was never written."""
        state = self.state_dict(epoch)
        if is_best and self.options.keep_best:
            save_checkpoint(self.files.best, state)
        save_checkpoint(self.files.last, state)
        self.logger.checkpointed(epoch, run=self.files.tensorboard)
        self.preemption.remove_checkpoint()
        self.on_saved(epoch)
