"""RSPS, random search with parameter sharing (Li and Talwalkar, "Random Search and Reproducibility for Neural
Architecture Search", UAI 2019), on NAS-Bench-201 as the original tool runs it (`exps/NAS-Bench-201-algos/
RANDOM-NAS.py`):

- weight step: the supernet restricted to an architecture drawn uniformly, one op per edge (`random_genotype`);
- no architecture parameters to learn: the valid batch only measures the step's architecture;
- the reported architecture, every epoch and at the end: the best of `select_num` uniformly drawn architectures,
  each scored on one valid batch (`search_find_best`).
"""
from __future__ import annotations

from typing import Any, Iterator

from .algorithms import Batch
from .weight_sharing import OpIndices, WeightSharingSearch


class RandomNAS(WeightSharingSearch):
    """Config settings: `select_num` (architectures scored per selection, the original's 100), `test_batch_size`
    (images scoring each, 512)."""

    selection_augmented = False  # candidates are scored on unaugmented valid images, as the original's

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.select_num = self.setting("select_num", 100)

    def sample_arch(self) -> OpIndices:
        return self.uniform_arch()

    def select_genotype(self, batches: Iterator[Batch], final: bool) -> tuple[Any, dict[str, float]]:
        return self.best_of([self.uniform_arch() for _ in range(self.select_num)], batches)
