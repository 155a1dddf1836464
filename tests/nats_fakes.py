"""NATS-Bench topology benchmarks written with nats_bench's own classes in its own on-disk format (the folder form
`NATS-tss-v1_0-3ffb9-simple/`: a meta file plus one file per arch), holding the 12-epoch (hp="12") and the 200-epoch
(hp="200") results, per-epoch accuracies and times included, as the multi-trial searches read them.

`write_tss_folder` writes any list of archs with figures from a `Figures` callback; `write_tiny_benchmark` writes the
64 cells made of two ops with figures whose best cell is known (`TINY_BEST`); benchmarks/make_nats_benchmark.py
writes one of the real size (15,625 archs) with plausible random figures.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from nats_bench.api_utils import ArchResults, ResultsCount, pickle_save

from xautodl.spaces.nas201 import Arch, parse_arch

FOLDER = "NATS-tss-v1_0-3ffb9-simple"
# The evaluation sets NATS-Bench stores per training setting, and the classes of each.
EVAL_SETS = {
    "cifar10-valid": ("x-valid", "ori-test"),
    "cifar10": ("ori-test",),
    "cifar100": ("x-valid", "x-test", "ori-test"),
    "ImageNet16-120": ("x-valid", "x-test", "ori-test"),
}
CLASSES = {"cifar10-valid": 10, "cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}
HP_EPOCHS = {"12": 12, "200": 200}


@dataclass(frozen=True)
class Figures:
    """One trial's figures: the final accuracy (%) per evaluation set (and "train"), and seconds per epoch."""

    final_accuracy: dict[str, float]
    train_seconds_per_epoch: float
    eval_seconds_per_epoch: float


# figures(index, arch string, dataset setting, hp, seed) -> the trial's Figures
FiguresFn = Callable[[int, str, str, str, int], Figures]


def make_trial(index: int, arch: str, dataset: str, seed: int, epochs: int, figures: Figures) -> ResultsCount:
    """One trial of `epochs` epochs as nats_bench stores it: accuracies rise linearly over the epochs to their final
    values (so reading an earlier epoch shows), every epoch with its training and evaluation time."""

    def per_epoch(final: float) -> list[float]:
        return [final - 20.0 * (epochs - 1 - epoch) / epochs for epoch in range(epochs)]

    config = {"name": "infer.tiny", "channel": 16, "num_cells": 5, "arch_str": arch, "class_num": CLASSES[dataset]}
    trial = ResultsCount(dataset, None, per_epoch(figures.final_accuracy["train"]), [0.5] * epochs,
                         1.0 + index % 7 / 10, 100.0 + index % 13, config, seed, epochs, [0.01])
    trial.update_train_info(trial.train_acc1es, None, trial.train_losses,
                            {epoch: figures.train_seconds_per_epoch for epoch in range(epochs)})
    accs, losses, times = {}, {}, {}
    for split in EVAL_SETS[dataset]:
        for epoch, accuracy in enumerate(per_epoch(figures.final_accuracy[split])):
            key = f"{split}@{epoch}"
            accs[key], losses[key], times[key] = accuracy, 1.0, figures.eval_seconds_per_epoch
    trial.update_eval(accs, losses, times)
    return trial


def arch_results(index: int, arch: str, figures: FiguresFn, seeds: dict[str, Sequence[int]],
                 epochs: dict[str, int]) -> dict:
    """{hp: ArchResults state} as one per-arch file of the benchmark holds it; `seeds[hp]`: the trials per setting,
    `epochs[hp]`: the epochs each trial stores."""
    states = {}
    for hp, hp_seeds in seeds.items():
        results = ArchResults(index, arch)
        for dataset in EVAL_SETS:
            for seed in hp_seeds:
                results.update(dataset, seed, make_trial(index, arch, dataset, seed, epochs[hp],
                                                         figures(index, arch, dataset, hp, seed)))
        states[hp] = results.state_dict()
    return states


def write_tss_folder(torch_home: Path, archs: Sequence[str], figures: FiguresFn,
                     seeds: dict[str, Sequence[int]] | None = None, epochs: dict[str, int] | None = None) -> Path:
    """`torch_home`/NATS-tss-v1_0-3ffb9-simple/ as nats_bench's fast mode reads it, one file per arch of `archs`
    (index = position in the list). Default seeds: 777 and 888 for both hp; default epochs: 12 and 200."""
    seeds = seeds or {"12": (777, 888), "200": (777, 888)}
    epochs = epochs or HP_EPOCHS
    folder = Path(torch_home) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for index, arch in enumerate(archs):
        pickle_save(arch_results(index, arch, figures, seeds, epochs), folder / f"{index:06d}.pickle")
    # The meta file last: a folder without it is not a benchmark (find_benchmark looks for it).
    pickle_save({"meta_archs": list(archs), "arch2infos": {}, "evaluated_indexes": []}, folder / "meta.pickle")
    return folder


# The tiny benchmark: the 64 cells whose edges carry one of two ops. Each edge has a preferred op and a weight; a
# cell's score is the summed weight of its edges holding their preferred op, so exactly one cell is best.
TINY_OPS = ("skip_connect", "nor_conv_3x3")
TINY_PREFERRED = ("nor_conv_3x3", "skip_connect", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_3x3")
TINY_WEIGHTS = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5)
TINY_BEST = str(Arch.from_edge_ops(TINY_PREFERRED))
TINY_ARCHS = [str(Arch.from_edge_ops(ops)) for ops in itertools.product(TINY_OPS, repeat=6)]
# Base accuracy per dataset setting and evaluation set; seeds 777 / 888 shift every figure by -0.25 / +0.25, which
# never reorders cells (scores differ by 1.0 or more, times 4 points).
TINY_BASE = {"train": 60.0, "x-valid": 50.0, "x-test": 48.0, "ori-test": 52.0}
TINY_DATASET_OFFSET = {"cifar10-valid": 0.0, "cifar10": 1.0, "cifar100": -20.0, "ImageNet16-120": -30.0}


def tiny_score(arch: str) -> float:
    """The tiny benchmark's score of a cell (higher is better)."""
    ops = parse_arch(arch).edge_ops()
    return sum(weight for weight, op, preferred in zip(TINY_WEIGHTS, ops, TINY_PREFERRED) if op == preferred)


def tiny_figures(index: int, arch: str, dataset: str, hp: str, seed: int) -> Figures:
    """Accuracy: base + 4 x score (+2 more at 200 epochs) +- 0.25 by seed; a conv edge costs 5 s more per epoch."""
    shift = 4.0 * tiny_score(arch) + (2.0 if hp == "200" else 0.0) + TINY_DATASET_OFFSET[dataset] \
        + (0.25 if seed == 888 else -0.25)
    convs = arch.count("nor_conv_3x3")
    return Figures({split: base + shift for split, base in TINY_BASE.items()},
                   train_seconds_per_epoch=10.0 + 5.0 * convs, eval_seconds_per_epoch=2.0)


def write_tiny_benchmark(torch_home: Path) -> Path:
    """The tiny benchmark (TINY_ARCHS, figures of `tiny_figures`) under `torch_home`; returns its folder. Its
    "200-epoch" trials store 3 epochs (nats_bench reads the last one all the same): a quarter of the writing time."""
    return write_tss_folder(torch_home, TINY_ARCHS, tiny_figures, epochs={"12": 12, "200": 3})
