"""What SETN, ENAS and RSPS (random search with parameter sharing) share: one architecture per forward, chosen
by the algorithm, and the choice of the reported architecture by scoring candidates on valid batches.

The three search the NAS-Bench-201 space as the original tool does (its `exps/NAS-Bench-201-algos/` and the later
`exps/NATS-algos/search-cell.py`): every weight step trains the supernet restricted to one sampled architecture,
the same in every cell (the original's "dynamic" mode), and the architecture an epoch reports is the best of
several candidates, each scored by its top-1 accuracy on one batch of the valid loader (`get_best_arch`): of the
config's `test_batch_size` images where it sets one (SETN and RSPS: 512, with the test transform, as the original's
valid loader), else one search batch (ENAS, with the training augmentation, as its ENAS.py sets that loader).

An architecture is a list of op indices, one per edge in the supernet's edge order (the rows of its alphas).
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import math

import torch

from ..errors import ConfigError
from ..runtime.distributed import sum_over_ranks, world_info
from ..runtime.precision import autocast
from .algorithms import Batch, SearchAlgorithm
from .mixing import SoftmaxMixer

OpIndices = list[int]


class ArchSample:
    """Edge e computes only its op `ops[e]` (unweighted, as the original's `forward_dynamic`); a node whose edges
    all carry `none` is zeros of the node's shape."""

    def __init__(self, ops: Sequence[int], none_ops: frozenset[int]) -> None:
        self.ops, self.none_ops = ops, none_ops

    def node(self, edges) -> torch.Tensor:
        terms = [x.apply(ops[self.ops[e]]) for e, ops, x in edges if self.ops[e] not in self.none_ops]
        if not terms:
            e, ops, x = edges[0]
            return x.apply(ops[self.ops[e]])  # the `none` op's zeros
        return sum(terms[1:], terms[0])


class ArchMixer:
    """The mixer of the weight-sharing algorithms (protocol of `mixing.py`).

    With `arch` set (by the algorithm, before each forward) the supernet computes that architecture; with `arch`
    None it mixes every op with softmax(alpha), DARTS' relaxation (SETN's architecture step, the original's "joint"
    mode). `generator` makes every random draw of the algorithm: seeded alike on every process of a torchrun job
    (so all draw the same architectures), on the CPU (the same on every device), and saved in the checkpoints.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.tau = 1.0  # no temperature: kept for the mixer protocol
        self.arch: OpIndices | None = None
        self.generator = torch.Generator().manual_seed(seed)
        self._softmax = SoftmaxMixer()

    def __call__(self, alphas: torch.Tensor, op_names: Sequence[str], unsampled_gradient: bool = True):
        if self.arch is None:
            return self._softmax(alphas, op_names)
        return ArchSample(self.arch, frozenset(k for k, name in enumerate(op_names) if name == "none"))

    def state_dict(self) -> dict:
        return {"seed": self.seed, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.generator.set_state(state["generator"])



class WeightSharingSearch(SearchAlgorithm):
    """The weight step on the architecture `sample_arch` draws; by default no architecture step (the valid batch
    only measures the step's architecture, as the original's RSPS and ENAS do); candidate scoring for
    `select_genotype`. `config` is the run's optimisation config, where the algorithm's settings live."""

    def __init__(self, *args, config=None, **kwargs) -> None:
        super().__init__(*args, config=config, **kwargs)
        self.mixer = getattr(self.model, "mixer", None)
        if not isinstance(self.mixer, ArchMixer):
            raise ConfigError(f"{type(self).__name__} searches the NAS-Bench-201 space only (its supernet's mixer "
                              f"must be an ArchMixer, got {type(self.mixer).__name__})")
        self.num_edges, self.num_ops = self.alphas[0].shape
        # Images scoring a candidate on each process: the original's valid batch, split over the processes.
        self.score_images = math.ceil(self.setting("test_batch_size", 0) / world_info()[1])

    def setting(self, key: str, default: int | float) -> int | float:
        """The config's `key`, of the type of `default` (the original's value, used when the config has none)."""
        value = None if self.config is None else self.config.get(key)
        return type(default)(value) if value is not None else default

    def sample_arch(self) -> OpIndices:
        """The architecture of the next weight step."""
        raise NotImplementedError

    def uniform_arch(self) -> OpIndices:
        """An op drawn uniformly on every edge (the original's `random.choice` per edge)."""
        return torch.randint(self.num_ops, (self.num_edges,), generator=self.mixer.generator).tolist()

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.mixer.arch = self.sample_arch()
        return super().weight_step(x, y)

    def arch_step(self, train: Batch, valid: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad(), autocast(self.amp, self.device):
            logits = self.forward_model(valid[0])
            loss = self.criterion(logits, valid[1])
        if self.scaler is not None:
            self.scaler.update()
        return loss.detach(), logits.detach()

    def genotype_of(self, arch: Sequence[int]) -> Any:
        """The cell whose edges carry the ops of indices `arch` (the supernet's `genotype_of`)."""
        return self.model.genotype_of(arch)

    def top1_counts(self, arch: Sequence[int], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[correct, images] of architecture `arch` on a batch (float64, on the device), without a gradient."""
        self.mixer.arch = list(arch)
        with torch.no_grad(), autocast(self.amp, self.device):
            logits = self.forward_model(x)
            correct = (logits.argmax(dim=-1) == y).sum()
        return torch.stack([correct.double(), torch.tensor(float(y.numel()), dtype=torch.float64, device=y.device)])

    def score(self, arch: Sequence[int], batches: Iterator[Batch]) -> torch.Tensor:
        """[correct, images] of `arch` on the next valid batches: one, or as many as make `score_images`."""
        total, images = None, 0
        while images == 0 or images < self.score_images:
            x, y = next(batches)
            counts = self.top1_counts(arch, x, y)
            total, images = counts if total is None else total + counts, images + y.numel()
        return total

    def best_of(self, candidates: Sequence[Sequence[int]], batches: Iterator[Batch]) -> tuple[Any, dict[str, float]]:
        """The candidate of highest top-1 accuracy, each scored (`score`) with the supernet in eval mode (the first
        of equal ones, as the original's `np.argmax`), with that accuracy (%) and the number of candidates. Under
        torchrun a candidate's accuracy is over the batches of every process, so all choose alike."""
        self.model.eval()
        counts = sum_over_ranks(torch.stack([self.score(arch, batches) for arch in candidates]))
        accuracies = 100.0 * counts[:, 0] / counts[:, 1]
        best = int(accuracies.argmax())
        metrics = {"selection_acc": float(accuracies[best]), "selection_candidates": len(candidates)}
        return self.genotype_of(candidates[best]), metrics
