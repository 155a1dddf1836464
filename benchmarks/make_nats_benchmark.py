"""Write a NATS-Bench topology benchmark of the real size: all 15,625 NAS-Bench-201 cells, in the real on-disk format
(the folder `NATS-tss-v1_0-3ffb9-simple/`: a meta file plus one bz2 pickle per arch, written with nats_bench's own
classes), each arch with its 12-epoch (seeds 111, 777) and 200-epoch (seeds 777, 888, 999) trials on the four
dataset settings, every epoch's accuracies and times included, with plausible random figures.

It stands in for the real benchmark (which cannot be downloaded here) to time the multi-trial searches:

    python benchmarks/make_nats_benchmark.py --torch_home /tmp/nats-real        # about 0.5 GB, minutes
    time bash scripts-search/algos/R-EA.sh cifar10 3 -1 --arch_nas_dataset /tmp/nats-real/NATS-tss-v1_0-3ffb9-simple \
        --save_dir /tmp/nats-real-runs/search

The figures: a cell's quality is the mean over its edges of an op score (3x3 conv 1.0, 1x1 conv 0.75, skip 0.45,
pooling 0.3, none 0) plus per-cell noise; accuracies grow with quality towards the benchmark's ranges (CIFAR-10 about
94%, CIFAR-100 73%, ImageNet16-120 47% at best), 12 epochs sit about 12 points below 200, seeds differ by noise; an
epoch costs more seconds the more convolutions the cell has, on bigger training sets more (CIFAR-10 train half 1x,
CIFAR-10 full and CIFAR-100 2x, ImageNet16-120 6x), so a 12-epoch trial on cifar10 costs about two to three minutes
of simulated time, as in the real benchmark's range.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from nats_fakes import FOLDER, Figures, write_tss_folder  # noqa: E402
from xautodl.spaces.nas201 import enumerate_archs, parse_arch  # noqa: E402

SEEDS = {"12": (111, 777), "200": (777, 888, 999)}
OP_SCORE = {"nor_conv_3x3": 1.0, "nor_conv_1x1": 0.75, "skip_connect": 0.45, "avg_pool_3x3": 0.3, "none": 0.0}
# Per dataset setting: (lowest, highest) 200-epoch test accuracy, and the training set's size relative to cifar10-valid.
RANGES = {"cifar10-valid": (10.0, 91.6), "cifar10": (10.0, 94.3), "cifar100": (1.0, 73.4),
          "ImageNet16-120": (0.8, 47.2)}
DATA_SCALE = {"cifar10-valid": 1.0, "cifar10": 2.0, "cifar100": 2.0, "ImageNet16-120": 6.0}
SPLIT_OFFSET = {"train": 6.0, "x-valid": 0.0, "x-test": -0.3, "ori-test": 0.0}


class RandomFigures:
    """Plausible figures per (arch, dataset setting, hp, seed), drawn from one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self._quality: dict[str, float] = {}

    def quality(self, arch: str) -> float:
        if arch not in self._quality:
            ops = parse_arch(arch).edge_ops()
            score = np.mean([OP_SCORE[op] for op in ops]) + self.rng.normal(0.0, 0.08)
            self._quality[arch] = float(np.clip(score, 0.0, 1.0))
        return self._quality[arch]

    def __call__(self, index: int, arch: str, dataset: str, hp: str, seed: int) -> Figures:
        low, high = RANGES[dataset]
        accuracy = low + (high - low) * self.quality(arch) ** 0.7 - (12.0 if hp == "12" else 0.0)
        final = {split: float(np.clip(accuracy + offset + self.rng.normal(0.0, 0.4), 0.0, 100.0))
                 for split, offset in SPLIT_OFFSET.items()}
        convs = arch.count("nor_conv_3x3") + 0.6 * arch.count("nor_conv_1x1")
        epoch_seconds = DATA_SCALE[dataset] * (7.0 + 1.8 * convs) * float(self.rng.uniform(0.95, 1.05))
        return Figures(final, train_seconds_per_epoch=epoch_seconds, eval_seconds_per_epoch=0.25 * epoch_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--torch_home", required=True, help=f"folder to write {FOLDER}/ into")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random figures")
    args = parser.parse_args()
    target = Path(args.torch_home) / FOLDER
    if (target / "meta.pickle.pbz2").exists():
        raise SystemExit(f"{target} already holds a benchmark; remove it first")
    archs = [str(arch) for arch in enumerate_archs()]
    start = time.perf_counter()
    write_tss_folder(Path(args.torch_home), archs, RandomFigures(args.seed), SEEDS)
    size = sum(path.stat().st_size for path in target.iterdir())
    print(f"wrote {len(archs)} archs to {target} ({size / 2**20:.0f} MiB) in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
