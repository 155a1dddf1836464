"""SETN on NAS-Bench-201 (Dong and Yang, "One-Shot Neural Architecture Search via Self-Evaluated Template
Network", ICCV 2019), as the original tool runs it (`exps/NAS-Bench-201-algos/SETN.py`; `search-cell.py --algo
setn` does the same):

- weight step: the supernet restricted to an architecture drawn uniformly, one op per edge (the original's
  `dync_genotype(True)`, every epoch); the original clips no gradient in this step;
- architecture step: DARTS first order on the valid batch, every op mixed with softmax(alpha) (its "joint" mode);
- the reported architecture, every epoch and at the end: the `select_num` architectures most probable under
  softmax(alpha) (the templates, `return_topK`), each scored on one valid batch, the best kept (`get_best_arch`).
"""
from __future__ import annotations

import itertools
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from .algorithms import Batch, SearchAlgorithm
from .weight_sharing import OpIndices, WeightSharingSearch


class SETN(WeightSharingSearch):
    """Config settings: `select_num` (templates scored per selection, the original's 100), `test_batch_size`
    (images scoring each, 512)."""

    selection_augmented = False  # candidates are scored on unaugmented valid images, as the original's

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.grad_clip = 0.0  # the original's SETN weight step clips no gradient (its GDAS, RSPS and ENAS do)
        self.select_num = self.setting("select_num", 100)

    def sample_arch(self) -> OpIndices:
        return self.uniform_arch()

    def arch_step(self, train: Batch, valid: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        self.mixer.arch = None  # softmax(alpha) mixing
        return SearchAlgorithm.arch_step(self, train, valid)

    def select_genotype(self, batches: Iterator[Batch], final: bool) -> tuple[Any, dict[str, float]]:
        return self.best_of(self.templates(self.select_num), batches)

    def templates(self, count: int) -> list[OpIndices]:
        """The `count` architectures of highest log-probability sum(log softmax(alpha)[e, op_e]) over every
        architecture of the space (all of them for a count below 1 or above their number), most probable first."""
        log_probs = F.log_softmax(self.alphas[0].detach().double(), dim=-1).cpu()
        every = torch.tensor(list(itertools.product(range(self.num_ops), repeat=self.num_edges)))
        scores = log_probs[torch.arange(self.num_edges), every].sum(dim=-1)
        order = torch.sort(scores, descending=True, stable=True).indices
        if 0 < count < len(order):
            order = order[:count]
        return every[order].tolist()
