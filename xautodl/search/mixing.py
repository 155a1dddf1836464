"""Edge mixing strategies: how a supernet edge combines its candidate ops.

A supernet owns its architecture parameters (one row of logits per edge) and, once per forward and per cell kind,
asks its mixer for an `EdgeSample`; every node then calls `sample.node(edges)`. Spaces never import this
module: they receive a mixer object from the entry point and only use `mixer(alphas, op_names)`, `mixer.tau`
and `EdgeSample.node`.

- `SoftmaxMixer` (DARTS): every op weighted by softmax(alpha); `none` is skipped since it adds zeros.
- `GumbelHardMixer` (GDAS): a hard one-hot Gumbel-softmax sample per edge; only the sampled op is computed and
  the straight-through weights carry a gradient to every alpha of the edge.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TrainingError


@dataclass
class EdgeSample:
    """Per-edge weights (E x K), per edge the op indices it mixes, and which op indices are `none` (zeros)."""

    weights: torch.Tensor
    active: list[list[int]]
    hard: bool
    zero_ops: frozenset[int] = frozenset()
    # GDAS: per edge, the summed weights of the ops not sampled (zero in value, see `node`).
    unused: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.hard and self.unused is None:
            chosen = torch.tensor([ops[0] for ops in self.active], device=self.weights.device)
            self.unused = self.unused_weights(self.weights, chosen)

    @staticmethod
    def unused_weights(weights: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """Per edge, the sum of the weights of every op but the chosen one."""
        return weights.sum(-1) - weights.gather(-1, chosen.unsqueeze(-1)).squeeze(-1)

    def node(self, edges: Sequence[tuple[int, Sequence[nn.Module], torch.Tensor]]) -> torch.Tensor:
        """A cell node: the sum over its incoming edges, given as (edge index, candidate ops, edge input), of the
        edge's active ops applied to the input, weighted by the edge's weights. `none` ops add zeros: skipped."""
        offset = None
        if self.hard:
            # GDAS also adds the weights of the ops it did not sample: zero in value (one_hot - p.detach() + p), they
            # route the straight-through gradient to every alpha of the edge. Summed over the node's edges they are
            # one scalar, added once (few small kernels matter on a GPU, where this step is launch-bound).
            ids = [edge for edge, _, _ in edges]
            contiguous = ids == list(range(ids[0], ids[0] + len(ids)))
            offset = (self.unused[ids[0]:ids[0] + len(ids)] if contiguous else self.unused[ids]).sum()
        out = None
        for edge, ops, x in edges:
            w = self.weights[edge]
            for k in self.active[edge]:
                if k in self.zero_ops:
                    continue
                y = ops[k](x)
                if out is None:  # one fused multiply-add per op, into one buffer per node
                    out = y * w[k] if offset is None else torch.addcmul(offset, w[k], y)
                else:
                    out.addcmul_(w[k], y)
        if out is None:  # GDAS sampled `none` on every edge: the node is zeros of its shape (plus the offset)
            edge, ops, x = edges[0]
            out = ops[self.active[edge][0]](x) + offset
        return out


class SoftmaxMixer:
    """DARTS: continuous relaxation, all ops mixed with softmax(alpha) weights."""

    hard = False

    def __init__(self) -> None:
        self.tau = 1.0  # unused; kept so every mixer answers set_tau the same way

    def __call__(self, alphas: torch.Tensor, op_names: Sequence[str]) -> EdgeSample:
        computed = [k for k, name in enumerate(op_names) if name != "none"]
        return EdgeSample(F.softmax(alphas, dim=-1), [computed] * alphas.shape[0], hard=False)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class GumbelHardMixer:
    """GDAS: hard Gumbel-softmax sample per edge with a straight-through gradient.

    logits = (log_softmax(alpha) + g) / tau with standard Gumbel noise g; the sampled op is argmax(logits);
    weights h = one_hot(index) - probs.detach() + probs. The noise comes from the mixer's own generator, so a
    fixed seed gives the same sample sequence, and distributed ranks seeded alike sample the same sub-graph.
    """

    hard = True

    def __init__(self, tau: float = 10.0, seed: int = 0) -> None:
        self.tau = tau
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._pending_state: torch.Tensor | None = None

    def _generator_for(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.seed)
            if self._pending_state is not None:
                self._generator.set_state(self._pending_state)
                self._pending_state = None
        return self._generator

    def __call__(self, alphas: torch.Tensor, op_names: Sequence[str]) -> EdgeSample:
        generator = self._generator_for(alphas.device)
        log_p = F.log_softmax(alphas, dim=-1)
        while True:
            gumbel = -torch.empty_like(alphas).exponential_(generator=generator).log()
            probs = F.softmax((log_p + gumbel) / self.tau, dim=-1)
            index = probs.argmax(dim=-1)
            flags = torch.stack([~torch.isfinite(gumbel).all(), ~torch.isfinite(probs).all()]).long()
            # One host read per sample: the chosen op of every edge and the two flags travel together.
            host = torch.cat([index, flags]).tolist()
            bad_noise, bad_probs = host[-2:]
            if bad_noise:
                continue  # an infinite Gumbel draw (exponential sample 0): draw again, as GDAS does
            if bad_probs:
                raise TrainingError("the architecture parameters (alphas) are no longer finite, so GDAS cannot sample "
                                    "an architecture; the run stopped and the last good checkpoint is kept. Try a "
                                    "smaller --arch_learning_rate or learning rate.")
            break
        one_hot = torch.zeros_like(probs).scatter_(-1, index.unsqueeze(-1), 1.0)
        weights = one_hot - probs.detach() + probs
        zero_ops = frozenset(k for k, name in enumerate(op_names) if name == "none")
        return EdgeSample(weights, [[k] for k in host[:-2]], hard=True, zero_ops=zero_ops,
                          unused=EdgeSample.unused_weights(weights, index))

    def state_dict(self) -> dict:
        generator = self._generator
        state = generator.get_state() if generator is not None else self._pending_state
        return {"tau": self.tau, "seed": self.seed, "generator": state}

    def load_state_dict(self, state: dict) -> None:
        self.tau, self.seed = float(state["tau"]), int(state["seed"])
        self._generator = None
        self._pending_state = state.get("generator")


def build_mixer(algorithm: str, tau: float = 10.0, seed: int = 0) -> SoftmaxMixer | GumbelHardMixer:
    """The mixer an algorithm needs: GDAS -> GumbelHardMixer, DARTS-V1/V2 -> SoftmaxMixer."""
    if algorithm.upper().startswith("GDAS"):
        return GumbelHardMixer(tau=tau, seed=seed)
    return SoftmaxMixer()
