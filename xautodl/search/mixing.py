"""Edge mixing: how a supernet edge combines its candidate ops, one sample type per algorithm.

A supernet owns its architecture parameters (one row of op logits per edge) and, once per forward and per cell
kind, asks its mixer for a sample; every cell node then calls `sample.node(edges)` with its incoming edges as
(edge index, the edge's candidate ops, the edge's input node). Spaces never import this module: they receive a
mixer from the entry point and only use `mixer(alphas, op_names, unsampled_gradient=...)`, `mixer.tau` and
`sample.node`. An input node is a `NodeInput` (owned by the cell, see `xautodl.spaces.ops`); ops read it with
`node_input.apply(op)`.

- `SoftmaxSample` (DARTS): node = sum over edges e and ops k of softmax(alpha)[e, k] * op_k(x_e).
- `GumbelSample` (GDAS): one op c_e per edge from a hard Gumbel-softmax sample, weights
  h = one_hot(c) - p.detach() + p; node = sum over edges of h[e, c_e] * op_{c_e}(x_e), plus (NAS-Bench-201 rule,
  `unsampled_gradient`) the value-zero sum of h[e, k] over the other ops, which routes the straight-through
  gradient to every alpha of the edge.

Each `node` has a textbook branch (exactly those formulas, every op called, `none` included) and a fast one, chosen
by `xautodl.utils.fastpath`. The fast one makes every scalar it needs once per forward (the step is launch-bound on
a GPU, where a small kernel costs as much as a convolution), skips `none`, adds each term with one fused
multiply-add into the node's own buffer, and, where no gradient flows to the weights (the weight step, with the
alphas frozen), uses GDAS's weights as host numbers: a weight of exactly 1.0 then costs nothing.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TrainingError
from ..utils.fastpath import fast_paths

Edge = tuple[int, Sequence[nn.Module], Any]  # (edge index, candidate ops, input NodeInput)
Scale = torch.Tensor | float  # a weight on the device, or its value read to the host


class NodeSum:
    """The sum of scale * term over a node's terms: one fused kernel per term, in place once the buffer is the
    node's own (never in place into a term that may be another op's input, e.g. a skip connection's)."""

    def __init__(self, start: torch.Tensor | None = None) -> None:
        self.value, self.owned = start, False

    def add(self, scale: Scale, term: torch.Tensor) -> None:
        out = self.value
        if isinstance(scale, float):
            if out is None:
                self.value, self.owned = (term, False) if scale == 1.0 else (term * scale, True)
                return
            self.value = out.add_(term, alpha=scale) if self.owned else torch.add(out, term, alpha=scale)
        elif out is None:
            self.value = term * scale
        else:
            self.value = out.addcmul_(scale, term) if self.owned else torch.addcmul(out, scale, term)
        self.owned = True


class SoftmaxSample:
    """DARTS: every op of edge e weighted by softmax(alpha)[e]."""

    def __init__(self, weights: torch.Tensor, op_names: Sequence[str]) -> None:
        self.weights = weights
        self.computed = [k for k, name in enumerate(op_names) if name != "none"]  # `none` adds zeros
        # One unbind per row: every scalar a node needs, made once per forward.
        self._rows = [row.unbind(0) for row in weights.unbind(0)] if fast_paths() else None

    def node(self, edges: Sequence[Edge]) -> torch.Tensor:
        if self._rows is None or not fast_paths():
            return sum(self.weights[e, k] * x.apply(op) for e, ops, x in edges for k, op in enumerate(ops))
        total = NodeSum()
        for e, ops, x in edges:
            row = self._rows[e]
            for k in self.computed:
                total.add(row[k], x.apply(ops[k]))
        return total.value


class GumbelSample:
    """GDAS: edge e computes only its sampled op `chosen_ops[e]`, weighted by h[e, chosen] (`weights` is h).

    `chosen_values` are the values of those weights read to the host with the sample (used when no gradient flows
    to the weights); `none_ops` are the op indices of `none`.
    """

    def __init__(self, weights: torch.Tensor, chosen: torch.Tensor, chosen_ops: list[int], chosen_values: list[float],
                 none_ops: frozenset[int], unsampled_gradient: bool = True) -> None:
        self.weights, self.chosen, self.chosen_ops, self.chosen_values = weights, chosen, chosen_ops, chosen_values
        self.none_ops, self.unsampled_gradient = none_ops, unsampled_gradient
        self.differentiable = weights.requires_grad
        self._scales: list[Scale] | None = None
        self._unused: torch.Tensor | None = None
        self._offsets: dict[tuple[int, ...], torch.Tensor] = {}

    def node(self, edges: Sequence[Edge]) -> torch.Tensor:
        if not fast_paths():
            return self._textbook_node(edges)
        # The value-zero weights of the unsampled ops, summed over the node's edges into one scalar (made once per
        # node for all cells); without a gradient to carry they are left out.
        route = self.differentiable and self.unsampled_gradient
        total = NodeSum(self._offset(tuple(e for e, _, _ in edges)) if route else None)
        scales = self._chosen_scales()
        for e, ops, x in edges:
            if self.chosen_ops[e] not in self.none_ops:
                total.add(scales[e], x.apply(ops[self.chosen_ops[e]]))
        if total.value is None or total.value.dim() == 0:  # `none` on every edge: zeros of the node's shape
            e, ops, x = edges[0]
            zeros = x.apply(ops[self.chosen_ops[e]])
            return zeros if total.value is None else zeros + total.value
        return total.value

    def _textbook_node(self, edges: Sequence[Edge]) -> torch.Tensor:
        out = 0
        for e, ops, x in edges:
            c = self.chosen_ops[e]
            out = out + self.weights[e, c] * x.apply(ops[c])
            if self.unsampled_gradient:
                out = out + sum(self.weights[e, k] for k in range(len(ops)) if k != c)
        return out

    def _chosen_scales(self) -> list[Scale]:
        if self._scales is None:
            if self.differentiable:  # one gather + unbind: the chosen weight of every edge as a device scalar
                self._scales = list(self.weights.gather(-1, self.chosen.unsqueeze(-1)).squeeze(-1).unbind(0))
            else:
                self._scales = list(self.chosen_values)
        return self._scales

    @staticmethod
    def unused_weights(weights: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """Per edge, the sum of the weights of every op but the chosen one (exactly zero in value for GDAS weights,
        one_hot - p.detach() + p, with a gradient of one to each of them)."""
        return weights.scatter(-1, chosen.unsqueeze(-1), 0.0).sum(-1)

    def _offset(self, ids: tuple[int, ...]) -> torch.Tensor:
        if ids not in self._offsets:
            if self._unused is None:
                self._unused = self.unused_weights(self.weights, self.chosen)
            contiguous = ids == tuple(range(ids[0], ids[0] + len(ids)))
            terms = self._unused[ids[0]:ids[0] + len(ids)] if contiguous else self._unused[list(ids)]
            self._offsets[ids] = terms.sum()
        return self._offsets[ids]


class SoftmaxMixer:
    """DARTS: continuous relaxation, all ops mixed with softmax(alpha) weights (no temperature)."""

    def __call__(self, alphas: torch.Tensor, op_names: Sequence[str], unsampled_gradient: bool = True) -> SoftmaxSample:
        return SoftmaxSample(F.softmax(alphas, dim=-1), op_names)

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
        none_ops = frozenset(k for k, name in enumerate(op_names) if name == "none")
        return GumbelSample(weights, index, [int(k) for k in host[:edges]], host[edges:2 * edges], none_ops,
                            unsampled_gradient)

    def state_dict(self) -> dict:
        generator = self._generator
        state = generator.get_state() if generator is not None else self._pending_state
        return {"tau": self.tau, "seed": self.seed, "generator": state}

    def load_state_dict(self, state: dict) -> None:
        self.tau, self.seed = float(state["tau"]), int(state["seed"])
        self._generator = None
        self._pending_state = state.get("generator")
