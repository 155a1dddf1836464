"""Which checkpoint a run may resume from, and how its state goes back into the loop's objects.

A checkpoint resumes a run only when it is of the loop's kind, carries the run's identity (flat keys such as
`seed`, `space`, `arch`) and its optimisation settings (unless `--resume_with_new_settings`: the change is then
applied and recorded), and holds nothing the epoch skeleton never writes. A checkpoint of another run stops the
command with a message saying what differs; one with fields this tool never writes (tampered, or damaged in a way
the pickle format does not show) counts as damaged, so `load_resume_checkpoint` falls back to `<last>.prev`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .checkpoint import ForeignCheckpointError, load_resume_checkpoint, previous_path
from .logger import RunLogger
from .preemption import mid_epoch_fields_problem
from .seeding import restore_rng_state

# Optimizer entries that choose an implementation, not the optimisation; "lr" follows the schedule (its start,
# "initial_lr", is compared instead when the run has a schedule).
_IMPLEMENTATION_KEYS = frozenset({"params", "lr", "initial_lr", "foreach", "fused", "capturable", "differentiable"})


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


def run_settings(stateful: dict[str, Any], loop_settings: dict[str, Any]) -> dict[str, Any]:
    """The optimisation settings a resumed run must share: every optimizer's hyperparameters (its start LR,
    momentum, weight decay, betas, ...) and the loop's own (the schedule's warmup and final LR, the tau range, the
    regularisers). The epochs are not among them: more epochs extend a run."""
    settings: dict[str, Any] = {}
    for key, obj in stateful.items():
        if isinstance(obj, torch.optim.Optimizer):
            settings.update(optimizer_settings(key, obj.state_dict()["param_groups"]))
    return {**settings, **loop_settings}


def where_a_rerun_resumes(last: Path, epochs_done: int) -> str:
    """Where a re-run of a run with `epochs_done` epochs resumes from: the last complete epoch's checkpoint
    (`.prev` when this run resumed from it and the last one was moved aside as damaged), or none yet."""
    kept = next((path for path in (last, previous_path(last)) if path.is_file()), None)
    if epochs_done and kept is not None:
        return f"the last good checkpoint, {kept} (epoch {epochs_done}), is kept and a re-run resumes from it"
    return "there is no good checkpoint yet" + ("" if epochs_done else " (this was the run's first epoch)")


class ResumePolicy:
    """Judges the checkpoints of the run whose last complete epoch is kept in `last_path` and loads one into the
    loop's `stateful` objects; `settings` are this command's `run_settings`."""

    def __init__(self, kind: str, identity: dict, last_path: Path, total_epochs: int, allow_new_settings: bool,
                 stateful: dict[str, Any], settings: dict[str, Any]) -> None:
        self.kind, self.identity, self.last_path, self.total_epochs = kind, identity, last_path, total_epochs
        self.allow_new_settings, self.stateful, self.settings = allow_new_settings, stateful, settings
        self.settings_change: dict[str, list] = {}  # name -> [checkpoint's value, this command's]

    def load_last(self, logger: RunLogger) -> dict | None:
        """The last complete epoch's state (`.prev` when the last is damaged), or None before the first."""
        return load_resume_checkpoint(self.last_path, logger=logger, check=self.check)

    def check(self, file: Path, state: dict) -> None:
        """ForeignCheckpointError for another run's checkpoint; CheckpointError for fields this tool never writes
        (a tampered or foreign file: the caller then tries `.prev`)."""
        self._check_same_run(state)
        problem = self._unwritten_fields(state)
        if problem:
            raise CheckpointError(f"checkpoint {file} is not one this tool wrote ({problem})")
        self._check_same_settings(state)

    def restore(self, state: dict, file: Path, done: int, logger: RunLogger) -> None:
        """Load `state` (from `file`, holding `done` complete epochs) into the stateful objects, with this
        command's settings where --resume_with_new_settings changed them, and log where the run goes on. A
        mid-epoch state's RNG states go back only once its done steps' batches are drawn again (`Preemption`)."""
        epoch = int(state["epoch"])
        if done > self.total_epochs or epoch >= self.total_epochs:
            held = f"{done} epochs" if done > epoch else f"{done} epochs and part of epoch {epoch + 1}"
            raise CheckpointError(f"{file} already holds {held}, more than the {self.total_epochs} this command "
                                  f"trains (warmup included); pass at least as many --epochs to extend or inspect "
                                  f"that run, or another --save_dir to start a shorter one")
        for key, obj in self.stateful.items():
            if key == "model":
                self._load_model(obj, state["model"])
            elif state.get(key):
                obj.load_state_dict(state[key])
        if "mid_epoch" in state:
            info = state["mid_epoch"]
            logger.log(f"resumed from {file} in epoch {epoch + 1} after step {info['step']} of {info['steps']}")
        else:
            restore_rng_state(state["rng"])
            logger.log(f"resumed from {file} after epoch {done}")
        if self.settings_change:
            self._apply_new_optimizer_settings()
            changes = ", ".join(f"{name} {old} -> {new}" for name, (old, new) in sorted(self.settings_change.items()))
            logger.log(f"continuing with new settings (--resume_with_new_settings): {changes}")

    def _check_same_run(self, state: dict) -> None:
        if state.get("kind") != self.kind:
            raise ForeignCheckpointError(
                f"{self.last_path} is a {state.get('kind')} checkpoint, not a {self.kind} one; use another output "
                f"directory (--save_dir) or move the file away")
        differing = sorted(key for key, value in self.identity.items() if key in state and state[key] != value)
        if differing:
            found = ", ".join(f"{key}={state[key]}" for key in differing)
            wanted = ", ".join(f"{key}={self.identity[key]}" for key in differing)
            raise ForeignCheckpointError(
                f"{self.last_path} belongs to another run ({found}), not to this one ({wanted}); use another output "
                f"directory (--save_dir) or move the file away")

    def _check_same_settings(self, state: dict) -> None:
        """ForeignCheckpointError naming every optimisation setting that differs, unless the command line asked to
        continue with the new ones (then they are kept in `settings_change`)."""
        stored = state["settings"]
        changed = {name: [stored[name], value] for name, value in self.settings.items()
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
        """What in `state` no `EpochLoop.state_dict` writes, or None."""
        epoch, total = state.get("epoch"), state.get("total_epochs")
        in_progress = "mid_epoch" in state
        if type(epoch) is not int or epoch < 0:
            return f"its epoch is {epoch!r}, not an epoch number"
        if type(total) is not int or epoch >= total:
            return f"its epoch {epoch + 1} lies beyond its total of {total!r} epochs"
        done = epoch if in_progress else epoch + 1
        if state.get("finished") is not (not in_progress and done >= total):
            return f"it says finished={state.get('finished')!r} after epoch {epoch + 1} of {total}"
        history = state.get("history")
        if not isinstance(history, list) or not all(isinstance(entry, dict) for entry in history):
            return f"its history is {type(history).__name__} {str(history)[:60]}, not a list of epoch entries"
        if len(history) != done:
            return f"its history holds {len(history)} epochs, its epoch counter {done}"
        if in_progress:
            problem = mid_epoch_fields_problem(state["mid_epoch"])
            if problem:
                return problem
        for key in ("best", "rng", "settings"):
            if not isinstance(state.get(key), dict):
                return f"its {key} is {type(state.get(key)).__name__}, not a dict"
        return _model_problem(self.stateful.get("model"), state.get("model"))

    def _apply_new_optimizer_settings(self) -> None:
        """Loading an optimizer's state brought the checkpoint's hyperparameters back: put this command's in."""
        for key, obj in self.stateful.items():
            if not isinstance(obj, torch.optim.Optimizer):
                continue
            for index, group in enumerate(obj.param_groups):
                for name, (_, new) in self.settings_change.items():
                    owner, _, hyper = name.rpartition(".")
                    if owner in (key, f"{key}[{index}]"):
                        group["initial_lr" if hyper == "lr" and "initial_lr" in group else hyper] = (
                            tuple(new) if isinstance(group.get(hyper), tuple) else new)

    def _load_model(self, model: torch.nn.Module, model_state: dict) -> None:
        try:
            model.load_state_dict(model_state)
        except RuntimeError as err:
            problem = str(err).split("\n\t", 1)[-1].replace("\n\t", " ")
            raise CheckpointError(
                f"{self.last_path} holds a network that does not fit the one this command builds ({problem[:400]}); "
                f"it was written with other model settings: pass another --save_dir (or seed) to start a new run, "
                f"or move that checkpoint away") from None


def _model_problem(model: Any, stored: Any) -> str | None:
    """What in a checkpoint's `model` entry cannot be this run's network's state (shapes the run's settings never
    build, values that are not tensors), or None; a loop without a torch model checks nothing."""
    if model is None:
        return None
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

