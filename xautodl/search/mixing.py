"""Edge mixing: how a supernet edge combines its candidate ops, one sample type per algorithm.

A supernet owns its architecture parameters (one row of op logits per edge) and, once per forward and per cell
kind, asks its mixer for a sample: `mixer(alphas, op_names, unsampled_gradient=...)`. Every cell node then calls
`sample.node(edges)` with its incoming edges as (edge index, the edge's candidate ops, the edge's input node); a
node's edges are consecutive rows of the alphas. Spaces never import this module. An input node is a `NodeInput`
(owned by the cell, see `xautodl.spaces.ops`); an op reads it with `node_input.apply(op)`.

- `SoftmaxSample` (DARTS): node = sum over edges e and ops k of softmax(alpha)[e, k] * op_k(x_e).
- `GumbelSample` (GDAS): one op c_e per edge from a hard Gumbel-softmax sample, weights
  h = one_hot(c) - p.detach() + p; node = sum over edges of h[e, c_e] * op_{c_e}(x_e), plus (NAS-Bench-201 rule,
  `unsampled_gradient`) the value-zero sum of h[e, k] over the other ops, which routes the straight-through
  gradient to every alpha of the edge.

`tests/reference_mixing.py` states these formulas plainly; the tests hold this module to them. The code here
computes the same numbers for a step that is launch-bound on a GPU, where a small kernel costs as much as a
convolution: every scalar a node needs is made once per forward, `none` (zeros) is skipped, each term is added with
one fused multiply-add, and where no gradient flows to the mixing weights (the weight step, alphas frozen) GDAS's
weights are host numbers, so that a weight of exactly 1.0 costs nothing and the value-zero terms are left out.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TrainingError

Edge = tuple[int, Sequence[nn.Module], Any]  # (edge index, candidate ops, input NodeInput)
Scale = torch.Tensor | float  # a mixing weight on the device, or its value read to the host


def _weighted_sum(start: torch.Tensor | None, terms: Iterable[tuple[Scale, torch.Tensor]]) -> torch.Tensor | None:
    """start + the sum of scale * term over `terms`: one fused multiply-add each (a first host scale of 1.0: none),
    in place once the sum has a buffer of its own: never into `start` (shared by cells) or a term (it may be another
    op's input, e.g. a skip connection's)."""
    total, owned = start, False
    for scale, term in terms:
        if total is None:
            total, owned = (term, False) if isinstance(scale, float) and scale == 1.0 else (term * scale, True)
        elif isinstance(scale, float):
            total, owned = total.add_(term, alpha=scale) if owned else torch.add(total, term, alpha=scale), True
        else:
            total, owned = total.addcmul_(scale, term) if owned else torch.addcmul(total, scale, term), True
    return total


class GumbelSample:
    """GDAS: edge e computes only its sampled op c_e = `chosen_ops[e]`, weighted by h[e, c_e] (`weights` is h).

    `scales[e]` is h[e, c_e]: a device scalar when the weights carry a gradient (the alpha step), else its value
    read to the host with the sample (`chosen_values`). `unused[e]` is the sum of h[e, k] over the other ops, zero
    in value, made only when `unsampled_gradient` routes the alphas' gradient through it.
    """

    def __init__(self, weights: torch.Tensor, chosen: torch.Tensor, chosen_ops: list[int], chosen_values: list[float],
                 op_names: Sequence[str], unsampled_gradient: bool = True) -> None:
        self.weights, self.chosen, self.chosen_ops, self.chosen_values = weights, chosen, chosen_ops, chosen_values
        self.none_ops = frozenset(k for k, name in enumerate(op_names) if name == "none")
        self.unsampled_gradient, self.differentiable = unsampled_gradient, weights.requires_grad
        if self.differentiable:
            self.scales: Sequence[Scale] = weights.gather(-1, chosen.unsqueeze(-1)).squeeze(-1).unbind(0)
        else:
            self.scales = chosen_values
        routed = self.differentiable and unsampled_gradient
        self.unused = weights.scatter(-1, chosen.unsqueeze(-1), 0.0).sum(-1) if routed else None
        self.node_offsets: dict[int, torch.Tensor] = {}  # a node's first edge -> the node's sum of `unused`

    def node(self, edges: Sequence[Edge]) -> torch.Tensor:
        """The sum over the node's edges e of h[e, c_e] * op_{c_e}(x_e), plus the node's sum of `unused`."""
        first = edges[0][0]  # a node's edges are consecutive rows: its offset is a slice, made once for every cell
        if self.unused is not None and first not in self.node_offsets:
            self.node_offsets[first] = self.unused[first:first + len(edges)].sum()
        # `none` adds zeros: left out.
        sampled = [(e, ops[self.chosen_ops[e]], x) for e, ops, x in edges if self.chosen_ops[e] not in self.none_ops]
        total = _weighted_sum(self.node_offsets.get(first), ((self.scales[e], x.apply(op)) for e, op, x in sampled))
        if total is None or total.dim() == 0:  # `none` on every edge: zeros of the node's shape (plus the offset)
            e, ops, x = edges[0]
            zeros = x.apply(ops[self.chosen_ops[e]])
            total = zeros if total is None else zeros + total
        return total


class GumbelHardMixer:
    """GDAS: hard Gumbel-softmax sample per edge with a straight-through gradient.

    logits = (log_softmax(alpha) + g) / tau with standard Gumbel noise g; the sampled op is argmax(logits);
    weights h = one_hot(index) - probs.detach() + probs. The noise comes from the mixer's own generator, so a
    fixed seed gives the same sample sequence, and distributed ranks seeded alike sample the same sub-graph.
    """

    def __init__(self, tau: float, seed: int = 0) -> None:
        self.tau = tau
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._pending_state: torch.Tensor | None = None

    def __call__(self, alphas: torch.Tensor, op_names: Sequence[str], unsampled_gradient: bool = True) -> GumbelSample:
        """One sample; `unsampled_gradient` says whether nodes add the value-zero weights of the ops their edges did
        not sample (the original's NAS-Bench-201 cell does, its NASNet cell does not)."""
        generator = self._generator_for(alphas.device)
        log_p = F.log_softmax(alphas, dim=-1)
        while True:
            gumbel = -torch.empty_like(alphas).exponential_(generator=generator).log()
            probs = F.softmax((log_p + gumbel) / self.tau, dim=-1)
            index = probs.argmax(dim=-1)
            weights = torch.zeros_like(probs).scatter_(-1, index.unsqueeze(-1), 1.0) - probs.detach() + probs
            flags = torch.stack([~torch.isfinite(gumbel).all(), ~torch.isfinite(probs).all()])
            # One host read per sample: the chosen op of every edge, its weight's value and the two flags together.
            host = torch.cat([index.double(), weights.detach().gather(-1, index.unsqueeze(-1)).squeeze(-1).double(),
                              flags.double()]).tolist()
            bad_noise, bad_probs = host[-2:]
            if bad_noise:
                continue  # an infinite Gumbel draw (exponential sample 0): draw again, as GDAS does
            if bad_probs:
                raise TrainingError("the architecture parameters (alphas) are no longer finite, so GDAS cannot sample "
                                    "an architecture; the run stopped and the last good checkpoint is kept. Try a "
                                    "smaller --arch_learning_rate or learning rate.")
            break
        edges = alphas.shape[0]
        return GumbelSample(weights, index, [int(k) for k in host[:edges]], host[edges:2 * edges], op_names,
                            unsampled_gradient)

    def _generator_for(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.seed)
            if self._pending_state is not None:
                self._generator.set_state(self._pending_state)
                self._pending_state = None
        return self._generator

    def state_dict(self) -> dict:
        generator = self._generator
        state = generator.get_state() if generator is not None else self._pending_state
        return {"tau": self.tau, "seed": self.seed, "generator": state}

    def load_state_dict(self, state: dict) -> None:
        self.tau, self.seed = float(state["tau"]), int(state["seed"])
        self._generator = None
        self._pending_state = state.get("generator")


class SoftmaxSample:
    """DARTS: every op of edge e weighted by softmax(alpha)[e] (`weights`)."""

    def __init__(self, weights: torch.Tensor, op_names: Sequence[str]) -> None:
        self.weights = weights
        self.computed = [k for k, name in enumerate(op_names) if name != "none"]  # `none` adds zeros
        self.rows = [row.unbind(0) for row in weights.unbind(0)]  # every weight a node needs, as a device scalar

    def node(self, edges: Sequence[Edge]) -> torch.Tensor:
        """The sum over the node's edges e and their ops k of softmax(alpha)[e, k] * op_k(x_e), `none` left out."""
        return _weighted_sum(None, ((self.rows[e][k], x.apply(ops[k])) for e, ops, x in edges for k in self.computed))


class SoftmaxMixer:
    """DARTS: continuous relaxation, all ops mixed with softmax(alpha) weights (no temperature)."""

    def __call__(self, alphas: torch.Tensor, op_names: Sequence[str], unsampled_gradient: bool = True) -> SoftmaxSample:
        return SoftmaxSample(F.softmax(alphas, dim=-1), op_names)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
