"""The one bilevel search loop, shared by GDAS, DARTS-V1 and DARTS-V2 on every space.

Per iteration: a weight step on the train batch, then an architecture step on the valid batch. Per epoch: the LR
and tau schedules, metrics, the genotype, the alphas, the benchmark look-up, a checkpoint (atomic), the best
checkpoint and the summary JSON. Re-running resumes from the last complete epoch; the data order, augmentation
and Gumbel samples of an epoch depend only on state saved at its start, so a resumed run follows the same
trajectory as an uninterrupted one.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from ..errors import TrainingError
from ..runtime import (RunLogger, atomic_write_json, capture_rng_state, load_resume_checkpoint, restore_rng_state,
                       save_checkpoint)
from ..runtime.distributed import broadcast_buffers, world_info
from ..runtime.precision import to_channels_last
from ..optim.meters import DeviceMeter
from ..optim.schedules import CosineWithWarmup
from .algorithms import SearchAlgorithm

CHECKPOINT_KIND = "search"


class Supernet(Protocol):
    """What the loop needs from a space's supernet."""

    def weights(self) -> Iterable[nn.Parameter]: ...
    def alphas(self) -> Iterable[nn.Parameter]: ...
    def genotype(self) -> Any: ...
    def set_tau(self, tau: float) -> None: ...
    def alpha_table(self) -> dict[str, list[float]]: ...


@dataclass
class SearchRun:
    """Where a search writes and what it records besides the model (all plain data)."""

    run_dir: Path
    seed: int
    space: str
    algorithm: str
    dataset: str
    args: dict = field(default_factory=dict)
    supernet: str = "default"  # the space's supernet variant: its model config's name (GDAS, GDAS_FRC, DARTS)

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint" / f"seed-{self.seed}-basic.pth"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "checkpoint" / f"seed-{self.seed}-best.pth"

    @property
    def summary_path(self) -> Path:
        return self.run_dir / f"seed-{self.seed}-summary.json"


def tau_at(epoch: int, total_epochs: int, tau_max: float, tau_min: float) -> float:
    """Linear annealing from tau_max (first epoch) to tau_min (last epoch)."""
    if total_epochs <= 1:
        return tau_max
    return tau_max - (tau_max - tau_min) * epoch / (total_epochs - 1)


class SearchLoop:
    """Runs (or resumes) a search and writes its checkpoints, logs and summary."""

    def __init__(self, model: nn.Module, algorithm: SearchAlgorithm, loader, schedule: CosineWithWarmup,
                 run: SearchRun, logger: RunLogger, total_epochs: int, tau_range: tuple[float, float] | None = None,
                 mixer=None, limit_batches: int = 0, benchmark: Callable[[str], dict | None] | None = None,
                 progress: bool = True, is_main: bool = True, print_freq: int = 0,
                 channels_last: bool = False) -> None:
        self.model, self.algorithm, self.loader, self.schedule = model, algorithm, loader, schedule
        self.run, self.logger, self.total_epochs = run, logger, total_epochs
        self.tau_range, self.mixer = tau_range, mixer  # tau_range: (tau_max, tau_min), None without annealing
        self.limit_batches, self.benchmark = limit_batches, benchmark
        self.progress, self.is_main, self.print_freq = progress, is_main, print_freq
        self.channels_last = channels_last
        self.history: list[dict] = []
        self.best: dict = {"epoch": -1, "valid_acc": -1.0}
        self.start_epoch = 0

    # ----------------------------------------------------------------------------------------------- state
    def state_dict(self, epoch: int) -> dict:
        return {
            "kind": CHECKPOINT_KIND,
            "space": self.run.space,
            "algorithm": self.run.algorithm,
            "supernet": self.run.supernet,
            "dataset": self.run.dataset,
            "seed": self.run.seed,
            "epoch": epoch,
            "total_epochs": self.total_epochs,
            "finished": epoch + 1 >= self.total_epochs,
            "model": self.model.state_dict(),
            "w_optimizer": self.algorithm.w_optimizer.state_dict(),
            "a_optimizer": self.algorithm.a_optimizer.state_dict(),
            "mixer": self.mixer.state_dict() if self.mixer is not None else {},
            "rng": capture_rng_state(),
            "history": self.history,
            "best": self.best,
            "genotype": self.model.genotype().to_dict(),
            "args": self.run.args,
        }

    def resume(self) -> bool:
        """Load the last complete epoch's checkpoint if there is one; True when resumed."""
        state = load_resume_checkpoint(self.run.checkpoint_path, logger=self.logger)
        if state is None:
            return False
        self._check_compatible(state)
        self._load_model_state(state["model"])
        self.algorithm.w_optimizer.load_state_dict(state["w_optimizer"])
        self.algorithm.a_optimizer.load_state_dict(state["a_optimizer"])
        if self.mixer is not None and state.get("mixer"):
            self.mixer.load_state_dict(state["mixer"])
        restore_rng_state(state["rng"])
        self.history, self.best = list(state["history"]), dict(state["best"])
        self.start_epoch = int(state["epoch"]) + 1
        self.logger.log(f"resumed from {self.run.checkpoint_path} after epoch {self.start_epoch}")
        return True

    def _load_model_state(self, model_state: dict) -> None:
        from ..errors import CheckpointError

        try:
            self.model.load_state_dict(model_state)
        except RuntimeError as err:
            problem = str(err).split("\n\t", 1)[-1].replace("\n\t", " ")
            raise CheckpointError(
                f"{self.run.checkpoint_path} holds a supernet that does not fit the one this command builds "
                f"({problem[:400]}). It was written with other model settings or by an older xautodl (NASNet "
                f"supernets gained the original's final BN + ReLU, `lastact`, in 2.0.0.dev0); pass another "
                f"--save_dir (or seed) to start a new run, or move that checkpoint away") from None

    def _check_compatible(self, state: dict) -> None:
        from ..errors import CheckpointError

        expected = (CHECKPOINT_KIND, self.run.space, self.run.algorithm, self.run.supernet)
        # Checkpoints written before the supernet was recorded hold NAS-Bench-201 runs (NASNet ones, whose space was
        # then called darts, no longer fit and are refused here).
        found = (state.get("kind"), state.get("space"), state.get("algorithm"), state.get("supernet", "default"))
        if found != expected:
            raise CheckpointError(
                f"{self.run.checkpoint_path} holds a {found[2]} {found[0]} on the {found[1]} space (supernet "
                f"{found[3]}), not a {expected[2]} search on the {expected[1]} space (supernet {expected[3]}); use "
                f"another --save_dir or remove the file")

    # ------------------------------------------------------------------------------------------------ loop
    def steps_per_epoch(self) -> int:
        steps = len(self.loader)
        return min(steps, self.limit_batches) if self.limit_batches > 0 else steps

    def run_epoch(self, epoch: int) -> dict:
        """One epoch of alternating weight and architecture steps; returns its metrics (host numbers)."""
        tau = None if self.tau_range is None else tau_at(epoch, self.total_epochs, *self.tau_range)
        if tau is not None:
            self.model.set_tau(tau)
        self.loader.set_epoch(epoch)
        self.model.train()
        steps = self.steps_per_epoch()
        meter = DeviceMeter()
        start = time.time()
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{self.total_epochs}", leave=False,
                   disable=None if self.progress and self.is_main else True)
        lr = self.schedule.set_position(epoch, 0.0)
        for step, (x_train, y_train, x_valid, y_valid) in enumerate(self.loader):
            if step >= steps:
                break
            lr = self.schedule.set_position(epoch, step / steps)
            x_train, x_valid = to_channels_last(x_train, self.channels_last), to_channels_last(x_valid, self.channels_last)
            w_loss, w_logits = self.algorithm.weight_step(x_train, y_train)
            a_loss, a_logits = self.algorithm.arch_step((x_train, y_train), (x_valid, y_valid))
            meter.add("train", w_loss, w_logits, y_train)
            meter.add("valid", a_loss, a_logits, y_valid)
            bar.update(1)
            if bar.disable and self.print_freq and (step + 1) % self.print_freq == 0:
                self.logger.log(f"epoch {epoch} step {step + 1}/{steps} {meter.format()}")
        bar.close()
        metrics = meter.read()
        metrics.update(epoch=epoch, tau=tau, lr=lr, seconds=time.time() - start)
        for key in ("train_loss", "valid_loss"):
            if not math.isfinite(metrics[key]):
                raise TrainingError(
                    f"the {key.replace('_', ' ')} became {metrics[key]} in epoch {epoch + 1}; the run stopped and the "
                    f"last good checkpoint ({self.run.checkpoint_path}) is kept. Try a smaller learning rate.")
        return metrics

    def record_epoch(self, metrics: dict) -> dict:
        """Genotype, benchmark look-up, logs and TensorBoard for a finished epoch; returns the history entry."""
        genotype = self.model.genotype()
        alphas = self.model.alpha_table()
        entry = dict(metrics, genotype=str(genotype), genotype_dict=genotype.to_dict(), alphas=alphas)
        if self.benchmark is not None:
            entry["benchmark"] = self.benchmark(str(genotype))
        epoch = metrics["epoch"]
        tau_text = "" if metrics["tau"] is None else f"tau {metrics['tau']:.3f} "
        self.logger.log(
            f"epoch {epoch + 1:3d}/{self.total_epochs} | train loss {metrics['train_loss']:.3f} "
            f"acc {metrics['train_acc']:.2f}% | valid loss {metrics['valid_loss']:.3f} acc {metrics['valid_acc']:.2f}% "
            f"| {tau_text}lr {metrics['lr']:.5f} | {metrics['seconds']:.1f}s")
        self.logger.log(f"epoch {epoch + 1:3d} genotype: {genotype}")
        if entry.get("benchmark"):
            self.logger.log(f"epoch {epoch + 1:3d} benchmark: {_format_benchmark(entry['benchmark'])}")
        scalars = {f"search/{k}": metrics[k] for k in ("train_loss", "train_acc", "valid_loss", "valid_acc", "lr", "tau")
                   if metrics[k] is not None}
        for edge, probs in alphas.items():
            for k, p in enumerate(probs):
                scalars[f"alpha/{edge}/{k}"] = p
        self.logger.scalars(scalars, epoch)
        return entry

    def run_search(self) -> dict:
        """Run the remaining epochs; returns the summary written to the run's summary JSON."""
        self.resume()
        for epoch in range(self.start_epoch, self.total_epochs):
            metrics = self.run_epoch(epoch)
            self.history.append(self.record_epoch(metrics))
            # Weights and alphas stay equal across ranks (averaged gradients); BN statistics are rank 0's.
            broadcast_buffers(self.model)
            is_best = metrics["valid_acc"] > self.best["valid_acc"]
            if is_best:
                self.best = {"epoch": epoch, "valid_acc": metrics["valid_acc"], "genotype": self.history[-1]["genotype"]}
            if self.is_main:
                state = self.state_dict(epoch)
                # Best before last: a crash between the two then re-runs this epoch and rewrites both, instead of
                # resuming past an epoch whose best checkpoint was never written.
                if is_best:
                    save_checkpoint(self.run.best_path, state)
                save_checkpoint(self.run.checkpoint_path, state)
                atomic_write_json(self.run.summary_path, self.summary())
        self._check_ranks_in_sync()
        summary = self.summary()
        if self.is_main:
            # Also after a resume that found nothing left to do: a crash after the last checkpoint but before
            # its summary must not leave the summary one epoch short.
            atomic_write_json(self.run.summary_path, summary)
        return summary

    def _check_ranks_in_sync(self) -> None:
        """Under torchrun, compare a checksum of the weights and alphas of every rank (one collective per run)."""
        _, world_size = world_info()
        if world_size == 1:
            return
        checksum = torch.stack([p.detach().double().sum() for p in self.model.parameters()]).sum().view(1)
        gathered = [torch.zeros_like(checksum) for _ in range(world_size)]
        dist.all_gather(gathered, checksum)
        values = [g.item() for g in gathered]
        self.logger.log(f"parameter checksums per rank: {values}")
        if len(set(values)) != 1:
            raise TrainingError(f"the {world_size} processes ended with different weights (checksums {values})")

    def summary(self) -> dict:
        final = self.history[-1]["genotype"] if self.history else str(self.model.genotype())
        return {
            "space": self.run.space,
            "algorithm": self.run.algorithm,
            "supernet": self.run.supernet,
            "dataset": self.run.dataset,
            "seed": self.run.seed,
            "epochs_done": len(self.history),
            "total_epochs": self.total_epochs,
            "final_genotype": final,
            "final_genotype_dict": self.history[-1]["genotype_dict"] if self.history else self.model.genotype().to_dict(),
            "best": self.best,
            "search_seconds": sum(h["seconds"] for h in self.history),
            "history": self.history,
            "args": self.run.args,
            "versions": {"torch": torch.__version__, "xautodl": _version()},
        }


def _format_benchmark(result: dict) -> str:
    parts = []
    for dataset, accs in result.get("accuracy", {}).items():
        parts.append(f"{dataset} test {accs.get('test', float('nan')):.2f}%")
    return ", ".join(parts) if parts else str(result)


def _version() -> str:
    from .. import __version__

    return __version__
