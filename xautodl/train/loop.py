"""The one supervised training loop: train a network for some epochs, evaluate it, checkpoint, resume.

Used by `exps/basic/basic-main.py` (published or searched NASNet genotypes) and `exps/NAS-Bench-201/main.py`
(an NB201 arch the benchmark's way). Features: per-step warmup + cosine LR, auxiliary-head loss, linearly
increasing drop-path, per-epoch evaluation on named loaders; checkpoints, resume and the finite-loss check come
from the epoch skeleton (`xautodl.runtime.epochs`) the search loop shares.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..optim.meters import DeviceMeter
from ..optim.schedules import CosineWithWarmup
from ..runtime import RunLogger
from ..runtime.distributed import broadcast_buffers
from ..runtime.epochs import EpochLoop, EpochOptions
from ..runtime.preemption import EpochProgress
from ..runtime.run_record import RunFiles
from ..runtime.precision import autocast, grad_scaler, to_channels_last


@dataclass
class TrainSettings:
    """How to train: epochs (warmup included), regularisers and limits."""

    total_epochs: int
    print_freq: int  # steps between plain log lines when no progress bar shows (0: none); the commands' --print_freq
    aux_weight: float = 0.0
    drop_path_prob: float = 0.0
    grad_clip: float = 0.0
    limit_batches: int = 0
    progress: bool = True
    amp: str = "off"
    channels_last: bool = False


def training_module(model: nn.Module, compile_model: bool, world_size: int, device: torch.device) -> nn.Module | None:
    """The module that trains `model`: DistributedDataParallel under torchrun, torch.compile with --compile, or
    None for the model itself (the Trainer's `forward_model`)."""
    if world_size > 1:
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(model) if compile_model else None


def _loop_settings(schedule: CosineWithWarmup, settings: TrainSettings, criterion: Callable) -> dict[str, Any]:
    """The settings of a training run, beside its optimizer's, that a resumed run must share: the schedule's, the
    regularisers (auxiliary-loss weight, drop-path, gradient clipping) and the criterion's label smoothing."""
    regularisers = {name: float(getattr(settings, name)) for name in ("aux_weight", "drop_path_prob", "grad_clip")}
    smoothing = getattr(criterion, "label_smoothing", None)
    criterion_settings = {} if smoothing is None else {"label_smoothing": float(smoothing)}
    return {**schedule.settings(), **regularisers, **criterion_settings}


class Trainer(EpochLoop):
    """Trains `model` on `train_loader`, evaluating every epoch on each loader of `eval_loaders`.

    Checkpoints go where `files` says (the last epoch, and with `keep_best` the best one, chosen by the accuracy
    on `best_on`, an `eval_loaders` key); `identity` (e.g. arch, seed, dataset) is stored in them, and resuming
    from a checkpoint whose identity differs is refused.
    """

    kind = "train"
    best_key = "acc"

    def __init__(self, model: nn.Module, train_loader, eval_loaders: dict[str, Iterable], optimizer: torch.optim.Optimizer,
                 schedule: CosineWithWarmup, criterion: Callable, settings: TrainSettings, files: RunFiles,
                 identity: dict, logger: RunLogger, best_on: str | None = None, is_main: bool = True,
                 forward_model: nn.Module | None = None, keep_best: bool = True,
                 allow_new_settings: bool = False) -> None:
        options = EpochOptions(settings.total_epochs, limit_batches=settings.limit_batches, progress=settings.progress,
                               print_freq=settings.print_freq, keep_best=keep_best, is_main=is_main,
                               allow_new_settings=allow_new_settings)
        super().__init__(files, identity, logger, train_loader, options, _loop_settings(schedule, settings, criterion))
        self.model, self.train_loader, self.eval_loaders, self.files = model, train_loader, eval_loaders, files
        self.optimizer, self.schedule, self.criterion, self.settings = optimizer, schedule, criterion, settings
        self.best_on = best_on or (next(iter(eval_loaders)) if eval_loaders else None)
        # The module that trains: `model` itself, or a DDP / torch.compile wrapper of it.
        self.forward_model = forward_model if forward_model is not None else model
        self.device = next(model.parameters()).device
        self.scaler = grad_scaler(settings.amp, self.device)

    # ----------------------------------------------------------------------------------- the skeleton's hooks
    def stateful(self) -> dict[str, Any]:
        # fp16's loss scale adapts during training: a resumed run must go on with it, not start again at 65536.
        scaler = {} if self.scaler is None else {"scaler": self.scaler}
        return {"model": self.model, "optimizer": self.optimizer, **scaler}

    def best_entry(self, epoch: int, entry: dict) -> dict | None:
        if self.best_on is None:
            return None
        return {"epoch": epoch, "acc": entry[f"{self.best_on}_acc"], "on": self.best_on}

    # -------------------------------------------------------------------------------------------- loop
    def _loss(self, output, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(output, tuple):
            logits, aux_logits = output
            loss = self.criterion(logits, targets)
            if self.settings.aux_weight > 0:
                loss = loss + self.settings.aux_weight * self.criterion(aux_logits, targets)
            return loss, logits
        return self.criterion(output, targets), output

    def run_epoch(self, epoch: int) -> dict:
        """Train one epoch, then evaluate on every loader of `eval_loaders`; returns the epoch's metrics."""
        progress = self.begin_epoch()
        metrics = self.train_epoch(epoch, progress)
        train_seconds = progress.seconds()
        for name, loader in self.eval_loaders.items():
            metrics.update(self.evaluate(name, loader))
        metrics.update(epoch=epoch, train_seconds=train_seconds, seconds=progress.seconds())
        return metrics

    def train_epoch(self, epoch: int, progress: EpochProgress) -> dict:
        """The training steps of `epoch` from `progress.first_step` on; the epoch's training metrics."""
        model = self.forward_model
        model.train()
        if hasattr(self.model, "drop_path_prob"):
            self.model.drop_path_prob = self.settings.drop_path_prob * epoch / max(self.settings.total_epochs, 1)
        if hasattr(self.train_loader, "set_epoch"):
            self.train_loader.set_epoch(epoch)
        steps = self.epoch_steps()
        lr = self.schedule.set_position(epoch, progress.first_step / steps)
        for step, (inputs, targets) in self.epoch_batches(epoch, self.train_loader, progress):
            lr = self.schedule.set_position(epoch, step / steps)
            with autocast(self.settings.amp, self.device):
                loss, logits = self._loss(model(to_channels_last(inputs, self.settings.channels_last)), targets)
            self.optimizer.zero_grad(set_to_none=True)
            self._backward_and_step(loss)
            progress.meter.add("train", loss.detach(), logits.detach(), targets)
        # Every process then evaluates (and rank 0 saves) the same network, running statistics included.
        broadcast_buffers(self.model)
        return dict(progress.meter.read(), lr=lr)

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
        steps = self.steps(loader)
        for step, (inputs, targets) in enumerate(loader):
            if step >= steps:
                break
            with autocast(self.settings.amp, self.device):
                logits = self.model(to_channels_last(inputs, self.settings.channels_last))
                loss = self.criterion(logits, targets)
            meter.add(name, loss, logits, targets)
        return meter.read()

    def record(self, metrics: dict) -> dict:
        epoch = metrics["epoch"]
        parts = [f"epoch {epoch + 1:3d}/{self.settings.total_epochs}",
                 f"train loss {metrics['train_loss']:.3f} acc {metrics['train_acc']:.2f}%"]
        for name in self.eval_loaders:
            parts.append(f"{name} loss {metrics[name + '_loss']:.3f} acc {metrics[name + '_acc']:.2f}%")
        parts.append(f"lr {metrics['lr']:.5f} | {metrics['seconds']:.1f}s")
        self.logger.log(" | ".join(parts))
        scalars = {f"train/{k}": v for k, v in metrics.items() if isinstance(v, float)}
        self.logger.scalars(scalars, epoch, run=self.files.tensorboard)  # one event folder per run (seed, setting)
        return metrics
