"""The one bilevel search loop, shared by every algorithm of the registry on every space it searches.

Per iteration: a weight step on the train batch, then an architecture step on the valid batch. Per epoch: the LR
and tau schedules, the algorithm's optional phases after the steps (`algorithm_phases`: ENAS trains its controller,
SETN / ENAS / RSPS choose the genotype the epoch reports), metrics, the genotype, the alphas, the benchmark look-up,
then (through the epoch skeleton of
`xautodl.runtime.epochs`) the checkpoints and the summary JSON. Re-running resumes from the last complete epoch,
or from the step a SIGTERM stopped it at; the data order, augmentation and Gumbel samples depend only on saved
state (the epoch's loader streams, the mixer's generator), so a resumed run follows the same trajectory as an
uninterrupted one.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from torch import nn

from ..errors import TrainingError
from ..optim.schedules import CosineWithWarmup
from ..runtime import RunLogger
from ..runtime.distributed import broadcast_buffers, checksums_per_rank, world_info
from ..runtime.epochs import EpochLoop, EpochOptions
from ..runtime.run_record import RunFiles, new_record, write_record
from ..runtime.precision import to_channels_last
from .algorithms import Batch, SearchAlgorithm

# An algorithm's phase p after an epoch's steps draws the valid side's passes from p * PHASE_PASSES on, numbers the
# steps never reach: its batches are its own, and the same after a resume.
PHASE_PASSES = 1_000_000
# A genotype more than COLLAPSE_SHARE parameter-free for COLLAPSE_EPOCHS epochs in a row gets a warning.
COLLAPSE_SHARE, COLLAPSE_EPOCHS = 0.5, 3

class Supernet(Protocol):
    """What the loop needs from a space's supernet."""

    op_names: tuple[str, ...]  # the candidate ops, in the order of every alpha row

    def weights(self) -> Iterable[nn.Parameter]: ...
    def alphas(self) -> Iterable[nn.Parameter]: ...
    def genotype(self) -> Any: ...
    def set_tau(self, tau: float) -> None: ...
    def alpha_table(self) -> dict[str, list[float]]: ...


@dataclass
class SearchRun:
    """What identifies a search and where it writes (all plain data)."""

    run_dir: Path
    seed: int
    space: str
    algorithm: str
    dataset: str
    args: dict = field(default_factory=dict)
    supernet: str = "default"  # the space's supernet variant: its model config's name (GDAS, GDAS_FRC, DARTS)
    settings: dict = field(default_factory=dict)  # what else defines the run: batch size, model shape, BN tracking

    @property
    def files(self) -> RunFiles:
        return RunFiles.of_seed(self.run_dir, self.seed)

    def identity(self) -> dict:
        """The settings a checkpoint must share to be resumed by this run."""
        return {"space": self.space, "algorithm": self.algorithm, "supernet": self.supernet, "dataset": self.dataset,
                "seed": self.seed, **self.settings}


def _loop_settings(schedule: CosineWithWarmup, tau_range: tuple[float, float] | None) -> dict[str, Any]:
    """The settings of a search, beside its optimizers', that a resumed run must share: the schedule's and the
    tau range."""
    settings = schedule.settings()
    if tau_range is not None:
        settings.update(tau_max=float(tau_range[0]), tau_min=float(tau_range[1]))
    return settings


def tau_at(epoch: int, total_epochs: int, tau_max: float, tau_min: float) -> float:
    """Linear annealing from tau_max (first epoch) to tau_min (last epoch)."""
    if total_epochs <= 1:
        return tau_max
    return tau_max - (tau_max - tau_min) * epoch / (total_epochs - 1)


class SearchLoop(EpochLoop):
    """Runs (or resumes) a search and writes its checkpoints, logs and summary."""

    kind = "search"
    best_key = "valid_acc"

    def __init__(self, model: nn.Module, algorithm: SearchAlgorithm, loader, schedule: CosineWithWarmup,
                 run: SearchRun, logger: RunLogger, total_epochs: int, tau_range: tuple[float, float] | None = None,
                 mixer=None, limit_batches: int = 0, benchmark: Callable[[str], dict | None] | None = None,
                 progress: bool = True, is_main: bool = True, print_freq: int = 0,
                 channels_last: bool = False, allow_new_settings: bool = False) -> None:
        options = EpochOptions(total_epochs, limit_batches=limit_batches, progress=progress, print_freq=print_freq,
                               is_main=is_main, allow_new_settings=allow_new_settings)
        super().__init__(run.files, run.identity(), logger, loader, options, _loop_settings(schedule, tau_range))
        self.model, self.algorithm, self.loader, self.schedule = model, algorithm, loader, schedule
        self.run = run
        self.tau_range, self.mixer = tau_range, mixer  # tau_range: (tau_max, tau_min), None without annealing
        self.benchmark, self.channels_last = benchmark, channels_last
        self.selected_genotype = None  # the algorithm's choice for the last epoch run (`select_genotype`)

    # ----------------------------------------------------------------------------------- the skeleton's hooks
    def stateful(self) -> dict[str, Any]:
        objects = {"model": self.model, "w_optimizer": self.algorithm.w_optimizer,
                   "a_optimizer": self.algorithm.a_optimizer}
        if self.mixer is not None:
            objects["mixer"] = self.mixer
        objects.update(self.algorithm.state_objects())
        return objects

    def extra_state(self) -> dict:
        return {"genotype": self.genotype().to_dict(), "args": self.run.args}

    def best_entry(self, epoch: int, entry: dict) -> dict:
        return {"epoch": epoch, "valid_acc": entry["valid_acc"], "genotype": entry["genotype"]}

    def on_saved(self, epoch: int) -> None:
        write_record(self.run.files.summary, self.summary())

    # ------------------------------------------------------------------------------------------------ loop
    def run_epoch(self, epoch: int) -> dict:
        """One epoch of alternating weight and architecture steps; returns its metrics (host numbers)."""
        tau = None if self.tau_range is None else tau_at(epoch, self.total_epochs, *self.tau_range)
        if tau is not None:
            self.model.set_tau(tau)
        self.loader.set_epoch(epoch)
        self.model.train()
        steps = self.epoch_steps()
        progress = self.begin_epoch()
        lr = self.schedule.set_position(epoch, progress.first_step / steps)
        for step, (x_train, y_train, x_valid, y_valid) in self.epoch_batches(epoch, self.loader, progress):
            lr = self.schedule.set_position(epoch, step / steps)
            x_train, x_valid = to_channels_last(x_train, self.channels_last), to_channels_last(x_valid, self.channels_last)
            w_loss, w_logits = self.algorithm.weight_step(x_train, y_train)
            a_loss, a_logits = self.algorithm.arch_step((x_train, y_train), (x_valid, y_valid))
            progress.meter.add("train", w_loss, w_logits, y_train)
            progress.meter.add("valid", a_loss, a_logits, y_valid)
        # Weights and alphas stay equal across ranks (averaged gradients); BN statistics are rank 0's.
        broadcast_buffers(self.model)
        metrics = progress.meter.read()
        metrics.update(epoch=epoch, tau=tau, lr=lr, algorithm=self.algorithm_phases(epoch), seconds=progress.seconds())
        return metrics

    # --------------------------------------------------------------------------- the algorithm's optional phases
    def algorithm_phases(self, epoch: int) -> dict[str, float]:
        """The algorithm's work after the epoch's steps: `after_epoch`, then `select_genotype` (kept in
        `selected_genotype`); the metrics they report."""
        metrics = dict(self.algorithm.after_epoch(self.phase_batches(epoch, 1)))
        selection_batches = self.phase_batches(epoch, 2, augmented=self.algorithm.selection_augmented)
        selection = self.algorithm.select_genotype(selection_batches, final=epoch + 1 == self.total_epochs)
        if selection is not None:
            self.selected_genotype, selection_metrics = selection
            metrics.update(selection_metrics)
        return metrics

    def phase_batches(self, epoch: int, phase: int, augmented: bool = True) -> Iterator[Batch]:
        """Endless valid batches of `epoch` for the algorithm's phase `phase` (see PHASE_PASSES), with the training
        augmentation or (`augmented` False) the test transform."""
        passes = itertools.count(phase * PHASE_PASSES)
        batches = (self.loader.valid_batches(epoch, cycle, augmented) for cycle in passes)
        for x, y in itertools.chain.from_iterable(batches):
            yield to_channels_last(x, self.channels_last), y

    def genotype(self) -> Any:
        """The genotype the run reports: the algorithm's choice, or else the supernet's own."""
        return self.model.genotype() if self.selected_genotype is None else self.selected_genotype

    def record(self, metrics: dict) -> dict:
        """Genotype, benchmark look-up, logs and TensorBoard for a finished epoch; returns the history entry."""
        genotype = self.genotype()
        alphas = self.model.alpha_table()
        entry = dict(metrics, genotype=str(genotype), genotype_dict=genotype.to_dict(), alphas=alphas,
                     parameter_free_share=genotype.parameter_free_share())
        if self.benchmark is not None:
            entry["benchmark"] = self.benchmark(str(genotype))
        epoch = metrics["epoch"]
        tau_text = "" if metrics["tau"] is None else f"tau {metrics['tau']:.3f} "
        self.logger.log(
            f"epoch {epoch + 1:3d}/{self.total_epochs} | train loss {metrics['train_loss']:.3f} "
            f"acc {metrics['train_acc']:.2f}% | valid loss {metrics['valid_loss']:.3f} acc {metrics['valid_acc']:.2f}% "
            f"| {tau_text}lr {metrics['lr']:.5f} | {metrics['seconds']:.1f}s")
        self.logger.log(f"epoch {epoch + 1:3d} genotype: {genotype}")
        self.logger.log(f"epoch {epoch + 1:3d} edges: {edge_confidence(alphas, self.model.op_names)}")
        if entry.get("benchmark"):
            self.logger.log(f"epoch {epoch + 1:3d} benchmark: {_format_benchmark(entry['benchmark'])}")
        self.logger.log(f"epoch {epoch + 1:3d} parameter-free ops: {entry['parameter_free_share']:.0%} of the cell")
        self._warn_of_collapse(entry)
        if metrics["algorithm"]:
            self.logger.log(f"epoch {epoch + 1:3d} {self.run.algorithm}: "
                            + ", ".join(f"{key} {value:.4g}" for key, value in metrics["algorithm"].items()))
        scalars = {f"search/{k}": metrics[k] for k in ("train_loss", "train_acc", "valid_loss", "valid_acc", "lr", "tau")
                   if metrics[k] is not None}
        for edge, probs in alphas.items():
            for op, p in zip(self.model.op_names, probs):
                scalars[f"alpha/{edge}/{op}"] = p
        scalars["search/mean_alpha_entropy"] = mean_entropy(alphas)
        scalars["search/parameter_free_share"] = entry["parameter_free_share"]
        for dataset, accuracies in (entry.get("benchmark") or {}).get("accuracy", {}).items():
            for split, accuracy in accuracies.items():
                scalars[f"benchmark/{dataset}/{split}"] = accuracy
        scalars.update({f"algorithm/{key}": value for key, value in metrics["algorithm"].items()})
        self.logger.scalars(scalars, epoch, run=self.files.tensorboard)
        rows = [[h["epoch"] + 1, h["genotype"], h["valid_acc"]] for h in self.history]
        self.logger.table("search/genotypes", ["epoch", "genotype", "valid_acc"],
                          rows + [[epoch + 1, entry["genotype"], entry["valid_acc"]]], epoch, run=self.files.tensorboard)
        return entry

    def _warn_of_collapse(self, entry: dict) -> None:
        """One warning line when parameter-free ops have made up most of the cell for COLLAPSE_EPOCHS epochs in a
        row (said once per such stretch)."""
        shares = [h["parameter_free_share"] for h in self.history[-COLLAPSE_EPOCHS:]] + [entry["parameter_free_share"]]
        streak = len(list(itertools.takewhile(lambda share: share > COLLAPSE_SHARE, reversed(shares))))
        if streak == COLLAPSE_EPOCHS:
            self.logger.log(f"warning: parameter-free ops (none, skip_connect, pooling) have made up more than "
                            f"{COLLAPSE_SHARE:.0%} of the cell for {COLLAPSE_EPOCHS} epochs in a row: the search may be "
                            f"collapsing (DARTS' known failure mode); the genotype's benchmark accuracy will tell")

    def run_search(self) -> dict:
        """Run the remaining epochs; returns the summary written to the run's summary JSON."""
        self.fit()
        self._check_ranks_in_sync()
        summary = self.summary()
        if self.is_main:
            # Also after a resume that found nothing left to do: a crash after the last checkpoint but before
            # its summary must not leave the summary one epoch short.
            write_record(self.run.files.summary, summary)
        return summary

    def _check_ranks_in_sync(self) -> None:
        """Under torchrun, compare a checksum of the weights and alphas of every rank (one collective per run)."""
        _, world_size = world_info()
        if world_size == 1:
            return
        values = checksums_per_rank(self.model)
        self.logger.log(f"parameter checksums per rank: {values}")
        if len(set(values)) != 1:
            raise TrainingError(f"the {world_size} processes ended with different weights (checksums {values})")

    def summary(self) -> dict:
        """The run record of the search so far (`xautodl.runtime.run_record`; the search section holds the final
        genotype and the op order of every alphas row in the history)."""
        final = self.genotype() if not self.history else None
        section = {
            "space": self.run.space,
            "algorithm": self.run.algorithm,
            "supernet": self.run.supernet,
            "dataset": self.run.dataset,
            "final_genotype": self.history[-1]["genotype"] if self.history else str(final),
            "final_genotype_dict": self.history[-1]["genotype_dict"] if self.history else final.to_dict(),
            "op_names": list(self.model.op_names),
        }
        return new_record("search", run=self.run.identity(), seed=self.run.seed,
                          finished=len(self.history) >= self.total_epochs, epochs_done=len(self.history),
                          total_epochs=self.total_epochs, seconds=sum(h["seconds"] for h in self.history),
                          args=self.run.args, section=section, history=self.history, best=self.best)


def entropy(probs: Iterable[float]) -> float:
    """Entropy (nats) of one edge's op distribution softmax(alpha): log(#ops) undecided, 0 decided."""
    return -sum(p * math.log(p) for p in probs if p > 0)


def mean_entropy(alphas: dict[str, list[float]]) -> float:
    """The mean over edges of `entropy`."""
    return sum(entropy(probs) for probs in alphas.values()) / max(len(alphas), 1)


def edge_confidence(alphas: dict[str, list[float]], op_names: Sequence[str]) -> str:
    """Each edge's most probable op with its probability, and the mean entropy against the uniform one: one log
    line that shows the search growing confident (or not)."""
    parts = []
    for edge, probs in alphas.items():
        best = max(range(len(probs)), key=probs.__getitem__)
        parts.append(f"{edge} {op_names[best]} {probs[best]:.3f}")
    uniform = math.log(len(op_names))
    return f"{', '.join(parts)} | mean entropy {mean_entropy(alphas):.4f} nats (uniform {uniform:.4f})"


def _format_benchmark(result: dict) -> str:
    parts = []
    for dataset, accs in result.get("accuracy", {}).items():
        parts.append(f"{dataset} test {accs.get('test', float('nan')):.2f}%")
    return ", ".join(parts) if parts else str(result)

