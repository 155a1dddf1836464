"""The budgeted trial loop every multi-trial search shares: a trial is a look-up in NATS-Bench, not a training run.

As the original's `exps/NATS-algos/*.py` (through nats_bench's `simulate_train_eval`): evaluating a cell reads one
of the benchmark's 12-epoch trials (hp="12", a seed picked at random) on the search dataset, returns its validation
accuracy and charges its simulated cost, the training time up to the epoch read plus one pass over the validation
data. A search runs until the simulated seconds reach its budget (the trial that crosses it still counts), and its
result is the best cell by that validation accuracy, looked up in the benchmark's 200-epoch results (hp="200").
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..bench.nats import NatsBenchmark
from ..spaces.nas201 import Arch, edge_list
from ..spaces.ops import NB201_OPS

SEARCH_DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
# The original's budgets in simulated seconds on the topology space (exps/NATS-algos/run-all.sh).
DEFAULT_TIME_BUDGETS = {"cifar10": 20000, "cifar100": 40000, "ImageNet16-120": 120000}
PROXY_HP, PROXY_EPOCHS = "12", 12
FINAL_HP = "200"
# As simulate_train_eval: a search on cifar10 reads the cifar10-valid setting (trained on the train half, validated
# on the other half); cifar100 and ImageNet16-120 have their own validation split.
SEARCH_SETTING = {"cifar10": "cifar10-valid", "cifar100": "cifar100", "ImageNet16-120": "ImageNet16-120"}
NUM_EDGES = len(edge_list())

Cell = tuple[str, ...]  # the op of every edge, in `edge_list` order


def random_cell(ops: Sequence[str], rng: random.Random) -> Cell:
    """A cell with an op drawn uniformly on every edge."""
    return tuple(rng.choice(ops) for _ in range(NUM_EDGES))


def arch_string(cell: Cell) -> str:
    """The NAS-Bench-201 arch string of `cell`."""
    return str(Arch.from_edge_ops(cell))


@dataclass
class Trajectory:
    """Per evaluation, in order: simulated seconds spent so far, that evaluation's validation accuracy, and the
    best validation accuracy so far with the 200-epoch test accuracy of the cell that holds it."""

    seconds: list[float] = field(default_factory=list)
    valid_accuracy: list[float] = field(default_factory=list)
    best_valid_accuracy: list[float] = field(default_factory=list)
    best_test_accuracy: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[float]]:
        return {"seconds": self.seconds, "valid_accuracy": self.valid_accuracy,
                "best_valid_accuracy": self.best_valid_accuracy, "best_test_accuracy": self.best_test_accuracy}


class TrialLoop:
    """Evaluates cells against the benchmark and keeps the budget, the best cell and the trajectory.

    `rng` picks which of the benchmark's trials (seeds) answers each evaluation; a search passes the same
    `random.Random` it draws its cells from, so one seed fixes the whole run.
    """

    def __init__(self, bench: NatsBenchmark, dataset: str, time_budget: float, rng: random.Random,
                 ops: Sequence[str] = NB201_OPS) -> None:
        if dataset not in SEARCH_SETTING:
            raise ValueError(f"unknown search dataset {dataset!r}; expected one of {SEARCH_DATASETS}")
        self.bench, self.dataset, self.time_budget, self.rng = bench, dataset, float(time_budget), rng
        self.ops = tuple(ops)
        self.spent_seconds = 0.0
        self.evaluated: list[tuple[Cell, int, float]] = []  # (cell, epochs, validation accuracy) per evaluation
        self.best_cell: Cell | None = None
        self.best_valid_accuracy = float("-inf")
        self.trajectory = Trajectory()
        self._best_test_accuracy = float("nan")

    @property
    def within_budget(self) -> bool:
        """Whether the simulated seconds spent are still below the budget (another evaluation may start)."""
        return self.spent_seconds < self.time_budget

    def evaluate(self, cell: Cell, epochs: int = PROXY_EPOCHS) -> float:
        """The validation accuracy (%) of `cell` after `epochs` of the 12-epoch schedule, charged to the budget."""
        arch = arch_string(cell)
        trial = self.rng.choice(self.bench.simulated_trials(arch, SEARCH_SETTING[self.dataset], PROXY_HP,
                                                            epoch=epochs - 1))
        self.spent_seconds += trial.seconds
        self.evaluated.append((cell, epochs, trial.valid_accuracy))
        if trial.valid_accuracy > self.best_valid_accuracy:  # ties keep the earlier cell, as the original's max()
            self.best_cell, self.best_valid_accuracy = cell, trial.valid_accuracy
            self._best_test_accuracy = self.final_test_accuracy(arch)
        self.trajectory.seconds.append(self.spent_seconds)
        self.trajectory.valid_accuracy.append(trial.valid_accuracy)
        self.trajectory.best_valid_accuracy.append(self.best_valid_accuracy)
        self.trajectory.best_test_accuracy.append(self._best_test_accuracy)
        return trial.valid_accuracy

    def final_test_accuracy(self, arch: str) -> float:
        """The test accuracy (%) of `arch` on the search dataset after 200 epochs, averaged over the seeds."""
        return self.bench.query(arch, FINAL_HP).datasets[self.dataset].test_accuracy

    def result(self) -> dict[str, Any]:
        """The search's outcome: the best cell with its 200-epoch results, the trajectory, the counts."""
        if self.best_cell is None:
            raise RuntimeError("the search evaluated no cell")
        best_arch = arch_string(self.best_cell)
        return {
            "best_arch": best_arch,
            "best_valid_accuracy": self.best_valid_accuracy,
            "test_accuracy": self.final_test_accuracy(best_arch),
            "best_results": self.bench.query(best_arch, FINAL_HP).to_dict(),
            "trials": len(self.evaluated),
            "simulated_seconds": self.spent_seconds,
            "trajectory": self.trajectory.to_dict(),
        }


def setting(default: Any, flag: str, help: str, parse: Callable[[str], Any]) -> Any:
    """A field of an algorithm's settings dataclass: its default, the command-line flag that sets it (the
    original's flag name) and the argparse type that reads and checks it, defined once for the search and its
    command."""
    return field(default=default, metadata={"flag": flag, "help": help, "parse": parse})


@dataclass(frozen=True)
class TrialAlgorithm:
    """A multi-trial search: `search(trials, rng, settings)` evaluates cells until `trials.within_budget` is
    False; `settings` is an instance of `settings_type` (a dataclass of `setting` fields); `folder(settings)` names
    the output folder as the original did."""

    name: str
    search: Callable[[TrialLoop, random.Random, Any], None]
    settings_type: type
    folder: Callable[[Any], str]
