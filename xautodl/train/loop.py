"""The one supervised training loop: train a network for some epochs, evaluate it, checkpoint, resume.

Used by `exps/basic/basic-main.py` (published or searched NASNet genotypes) and `exps/NAS-Bench-201/main.py`
(an NB201 arch the benchmark's way). Features: per-step warmup + cosine LR, auxiliary-head loss, linearly
increasing drop-path, per-epoch evaluation on named loaders, best and last checkpoints written atomically,
auto-resume from the last complete epoch, NaN / inf loss detection.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..errors import CheckpointError, TrainingError
from ..runtime import (RunLogger, capture_rng_state, load_resume_checkpoint, restore_rng_state, save_checkpoint)
from ..runtime.distributed import broadcast_buffers
from ..runtime.precision import autocast, grad_scaler, to_channels_last
from ..optim.meters import DeviceMeter
from ..optim.schedules import CosineWithWarmup

CHECKPOINT_KIND = "train"


@dataclass
class TrainSettings:
    """How to train: epochs (warmup included), regularisers and limits."""

    total_epochs: int
    aux_weight: float = 0.0
    drop_path_prob: float = 0.0
    grad_clip: float = 0.0
    limit_batches: int = 0
    progress: bool = True
    print_freq: int = 100
    amp: str = "off"
    channels_last: bool = False


@dataclass
class TrainPaths:
    """Checkpoint files of one training run (last and best).

    `meta` identifies the run (e.g. arch, seed, dataset): it is stored in the checkpoints, and resuming from a
    checkpoint whose `meta` differs is refused.
    """

    last: Path
    best: Path | None = None
    meta: dict = field(default_factory=dict)


def training_module(model: nn.Module, compile_model: bool, world_size: int, device: torch.device) -> nn.Module | None:
    """The module that trains `model`: DistributedDataParallel under torchrun, torch.compile with --compile, or
    None for the model itself (the Trainer's `forward_model`)."""
    if world_size > 1:
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(model) if compile_model else None


class Trainer:
    """Trains `model` on `train_loader`, evaluating every epoch on each loader of `eval_loaders`.

    The best checkpoint is chosen by the accuracy on `best_on` (an `eval_loaders` key).
    """

    def __init__(self, model: nn.Module, train_loader, eval_loaders: dict[str, Iterable], optimizer: torch.optim.Optimizer,
                 schedule: CosineWithWarmup, criterion: Callable, settings: TrainSettings, paths: TrainPaths,
                 logger: RunLogger, best_on: str | None = None, is_main: bool = True,
                 forward_model: nn.Module | None = None) -> None:
        self.model, self.train_loader, self.eval_loaders = model, train_loader, eval_loaders
        self.optimizer, self.schedule, self.criterion = optimizer, schedule, criterion
        self.settings, self.paths, self.logger, self.is_main = settings, paths, logger, is_main
        self.best_on = best_on or (next(iter(eval_loaders)) if eval_loaders else None)
        # The module that trains: `model` itself, or a DDP / torch.compile wrapper of it.
        self.forward_model = forward_model if forward_model is not None else model
        self.device = next(model.parameters()).device
        self.scaler = grad_scaler(settings.amp, self.device)
        self.history: list[dict] = []
        self.best: dict = {"epoch": -1, "acc": -1.0}
        self.start_epoch = 0

    # ------------------------------------------------------------------------------------------- state
    def state_dict(self, epoch: int) -> dict:
        return {
            "kind": CHECKPOINT_KIND,
            "epoch": epoch,
            "total_epochs": self.settings.total_epochs,
            "finished": epoch + 1 >= self.settings.total_epochs,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": capture_rng_state(),
            "history": self.history,
            "best": self.best,
            "meta": self.paths.meta,
        }

    def resume(self) -> bool:
        state = load_resume_checkpoint(self.paths.last, logger=self.logger)
        if state is None:
            return False
        if state.get("kind") != CHECKPOINT_KIND:
            raise CheckpointError(f"{self.paths.last} is a {state.get('kind')} checkpoint, not a training one; "
                                  f"use another output directory or remove the file")
        self._check_same_run(state.get("meta", {}))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        restore_rng_state(state["rng"])
        self.history, self.best = list(state["history"]), dict(state["best"])
        self.start_epoch = int(state["epoch"]) + 1
        self.logger.log(f"resumed from {self.paths.last} after epoch {self.start_epoch}")
        return True

    def _check_same_run(self, stored: dict) -> None:
        differing = sorted(key for key, value in self.paths.meta.items() if key in stored and stored[key] != value)
        if differing:
            found = ", ".join(f"{key}={stored[key]}" for key in differing)
            wanted = ", ".join(f"{key}={self.paths.meta[key]}" for key in differing)
            raise CheckpointError(f"{self.paths.last} belongs to another run ({found}), not to this one ({wanted}); "
                                  f"use another output directory or move the file away")

    # -------------------------------------------------------------------------------------------- loop
    def _steps(self, loader) -> int:
        limit = self.settings.limit_batches
        return min(len(loader), limit) if limit > 0 else len(loader)

    def _loss(self, output, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(output, tuple):
            logits, aux_logits = output
            loss = self.criterion(logits, targets)
            if self.settings.aux_weight > 0:
                loss = loss + self.settings.aux_weight * self.criterion(aux_logits, targets)
            return loss, logits
        return self.criterion(output, targets), output

    def train_epoch(self, epoch: int) -> dict:
        model = self.forward_model
        model.train()
        if hasattr(self.model, "drop_path_prob"):
            self.model.drop_path_prob = self.settings.drop_path_prob * epoch / max(self.settings.total_epochs, 1)
        if hasattr(self.train_loader, "set_epoch"):
            self.train_loader.set_epoch(epoch)
        steps = self._steps(self.train_loader)
        meter = DeviceMeter()
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{self.settings.total_epochs}", leave=False,
                   disable=None if self.settings.progress and self.is_main else True)
        lr = self.schedule.set_position(epoch, 0.0)
        for step, (inputs, targets) in enumerate(self.train_loader):
            if step >= steps:
                break
            lr = self.schedule.set_position(epoch, step / steps)
            with autocast(self.settings.amp, self.device):
                loss, logits = self._loss(model(to_channels_last(inputs, self.settings.channels_last)), targets)
            self.optimizer.zero_grad(set_to_none=True)
            self._backward_and_step(loss)
            meter.add("train", loss.detach(), logits.detach(), targets)
            bar.update(1)
            if bar.disable and self.is_main and self.settings.print_freq and (step + 1) % self.settings.print_freq == 0:
                self.logger.log(f"epoch {epoch + 1} step {step + 1}/{steps} {meter.format()}")
        bar.close()
        # Every process then evaluates (and rank 0 saves) the same network, running statistics included.
        broadcast_buffers(self.model)
        return dict(meter.read(), lr=lr)

    def _backward_and_step(self, loss: torch.Tensor) -> None:
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        if self.settings.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()

    @torch.no_grad()
    def evaluate(self, name: str, loader) -> dict:
        """Loss, top-1 and top-5 accuracy of the model on `loader` (metrics prefixed with `name`).

        Each process evaluates its own share of `loader` with the plain model (no gradient synchronisation is needed);
        the meter sums the shares.
        """
        self.model.eval()
        meter = DeviceMeter()
        steps = self._steps(loader)
        for step, (inputs, targets) in enumerate(loader):
            if step >= steps:
                break
            with autocast(self.settings.amp, self.device):
                logits = self.model(to_channels_last(inputs, self.settings.channels_last))
                loss = self.criterion(logits, targets)
            meter.add(name, loss, logits, targets)
        return meter.read()

    def fit(self) -> list[dict]:
        """Train the remaining epochs; returns the per-epoch history."""
        self.resume()
        for epoch in range(self.start_epoch, self.settings.total_epochs):
            started = time.time()
            metrics = self.train_epoch(epoch)
            train_seconds = time.time() - started
            for name, loader in self.eval_loaders.items():
                metrics.update(self.evaluate(name, loader))
            metrics.update(epoch=epoch, train_seconds=train_seconds, seconds=time.time() - started)
            self._check_finite(metrics, epoch)
            self.history.append(metrics)
            self._log_epoch(metrics)
            is_best = self.best_on is not None and metrics[f"{self.best_on}_acc"] > self.best["acc"]
            if is_best:
                self.best = {"epoch": epoch, "acc": metrics[f"{self.best_on}_acc"], "on": self.best_on}
            if self.is_main:
                state = self.state_dict(epoch)
                # Best first: a crash between the two writes then repeats this epoch and rewrites both.
                if is_best and self.paths.best is not None:
                    save_checkpoint(self.paths.best, state)
                save_checkpoint(self.paths.last, state)
        return self.history

    def _check_finite(self, metrics: dict, epoch: int) -> None:
        for key, value in metrics.items():
            if key.endswith("_loss") and not math.isfinite(value):
                raise TrainingError(
                    f"the {key.replace('_', ' ')} became {value} in epoch {epoch + 1}; the run stopped and the last "
                    f"good checkpoint ({self.paths.last}) is kept. Try a smaller learning rate.")

    def _log_epoch(self, metrics: dict) -> None:
        epoch = metrics["epoch"]
        parts = [f"epoch {epoch + 1:3d}/{self.settings.total_epochs}",
                 f"train loss {metrics['train_loss']:.3f} acc {metrics['train_acc']:.2f}%"]
        for name in self.eval_loaders:
            parts.append(f"{name} loss {metrics[name + '_loss']:.3f} acc {metrics[name + '_acc']:.2f}%")
        parts.append(f"lr {metrics['lr']:.5f} | {metrics['seconds']:.1f}s")
        self.logger.log(" | ".join(parts))
        scalars = {f"train/{k}": v for k, v in metrics.items() if isinstance(v, float)}
        self.logger.scalars(scalars, epoch)
