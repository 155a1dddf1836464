"""Edge mixing strategies: how a supernet edge combines its candidate ops.

A supernet owns its architecture parameters (one row of logits per edge) and, once per forward and per cell kind,
asks its mixer for an `EdgeSample`; every node then calls `sample.node(edges)`. Spaces never import this
module: they receive a mixer object from the entry point and only use
`mixer(alphas, op_names, unsampled_gradient=...)`, `mixer.tau` and `EdgeSample.node`.

- `SoftmaxMixer` (DARTS): every op weighted by softmax(alpha); `none` is skipped since it adds zeros.
- `GumbelHardMixer` (GDAS): a hard one-hot Gumbel-softmax sample per edge; only the sampled op is computed and
  the straight-through weights carry the gradient to the alphas (through every op's weight, or, where the space's
  cell asks with `unsampled_gradient=False` as the original's NASNet cell does, through the chosen op's alone).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TrainingError


Scale = torch.Tensor | float  # a weight on the device, or its value read to the host


@dataclass
class EdgeSample:
    """Per-edge weights (E x K), per edge the op indices it mixes, and which op indices are `none` (zeros).

    `host_weights` (GDAS) holds, per edge, the values of the active ops' weights as read from the device; they are
    used when no gradient flows to the weights (the weight step, evaluation), so that a weight of exactly 1.0 costs
    no kernel at all.
    """

    weights: torch.Tensor
    active: list[list[int]]
    hard: bool
    zero_ops: frozenset[int] = frozenset()
    host_weights: list[list[float]] | None = None
    chosen: torch.Tensor | None = None  # GDAS: the sampled op of every edge, on the device (else made from `active`)
    unsampled_gradient: bool = True  # GDAS: nodes add the value-zero weights of the ops their edges did not sample

    def __post_init__(self) -> None:
        # Per forward, every scalar a node needs is made here once (a few kernels), not once per cell and edge:
        # the step is launch-bound on a GPU, where each small kernel costs as much as a convolution.
        self.differentiable = self.weights.requires_grad
        if self.host_weights is not None and not self.differentiable:
            scales: list[list[Scale]] = [list(row) for row in self.host_weights]
        elif self.hard:
            scales = [[w] for w in self.weights.gather(-1, self._chosen().unsqueeze(-1)).unbind(0)]
        else:
            rows = [row.unbind(0) for row in self.weights.unbind(0)]
            scales = [[row[k] for k in ops] for row, ops in zip(rows, self.active)]
        # Per edge, (op index, weight) of the ops it computes, aligned with `active`.
        self._terms = [[(k, scale) for k, scale in zip(ops, edge_scales) if k not in self.zero_ops]
                       for ops, edge_scales in zip(self.active, scales)]
        self._unused: torch.Tensor | None = None
        self._offsets: dict[tuple[int, ...], torch.Tensor] = {}
        self._activated: dict[tuple[int, type], tuple[torch.Tensor, torch.Tensor]] = {}

    def _chosen(self) -> torch.Tensor:
        """GDAS: the sampled op of every edge, on the weights' device."""
        if self.chosen is None:
            self.chosen = torch.tensor([ops[0] for ops in self.active], device=self.weights.device)
        return self.chosen

    @staticmethod
    def unused_weights(weights: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """Per edge, the sum of the weights of every op but the chosen one (exactly zero in value for GDAS weights,
        one_hot - p.detach() + p, with a gradient of one to each of them)."""
        return weights.scatter(-1, chosen.unsqueeze(-1), 0.0).sum(-1)

    def _offset(self, ids: tuple[int, ...]) -> torch.Tensor:
        """GDAS: the summed weights of the ops a node's edges did not sample (cached per node for all cells)."""
        if ids not in self._offsets:
            if self._unused is None:
                self._unused = self.unused_weights(self.weights, self._chosen())
            contiguous = ids == tuple(range(ids[0], ids[0] + len(ids)))
            terms = self._unused[ids[0]:ids[0] + len(ids)] if contiguous else self._unused[list(ids)]
            self._offsets[ids] = terms.sum()
        return self._offsets[ids]

    def node(self, edges: Sequence[tuple[int, Sequence[nn.Module], torch.Tensor]]) -> torch.Tensor:
        """A cell node: the sum over its incoming edges, given as (edge index, candidate ops, edge input), of the
        edge's active ops applied to the input, weighted by the edge's weights. `none` ops add zeros: skipped."""
        # GDAS (unless the space's cell does not) adds the weights of the ops it did not sample too: zero in value,
        # they route the straight-through gradient to every alpha of the edge. Summed over the node's edges they are
        # one scalar; without a gradient to carry they are left out.
        hard_grad = self.hard and self.differentiable and self.unsampled_gradient
        out = self._offset(tuple(edge for edge, _, _ in edges)) if hard_grad else None
        owned = False  # whether `out` is this node's own buffer (else it may be an op's input, e.g. from skip)
        for edge, ops, x in edges:
            for k, scale in self._terms[edge]:
                out, owned = _accumulate(out, owned, scale, self._apply(ops[k], x))
        if out is None or out.dim() == 0:  # `none` on every edge: zeros of the node's shape (plus the offset)
            edge, ops, x = edges[0]
            zeros = ops[self.active[edge][0]](x)
            out = zeros if out is None else zeros + out
        return out

    def _apply(self, op: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """op(x); an op that starts with the ReLU of its input (it declares `activation` and `after_relu`) shares
        one ReLU of x with every other such op reading x, in this node and in the cell's later nodes."""
        after_relu = getattr(op, "after_relu", None)
        if after_relu is None:
            return op(x)
        activation = op.activation
        key = (id(x), type(activation))
        cached = self._activated.get(key)
        if cached is None or cached[0] is not x:
            if len(self._activated) >= _ACTIVATION_CACHE_SIZE:  # the oldest entry belongs to an earlier cell
                del self._activated[next(iter(self._activated))]
            # Out of place even where the op's own layer is an in-place ReLU: x is read by other edges.
            value = F.relu(x) if isinstance(activation, nn.ReLU) else activation(x)
            cached = self._activated[key] = (x, value)
        return after_relu(cached[1])


# Activations kept per sample: more than the inputs a cell's nodes read (4 in NAS-Bench-201, 6 in NASNet), so the
# cache spans one cell; holding the input too keeps its id from being reused while cached.
_ACTIVATION_CACHE_SIZE = 8


def _accumulate(out: torch.Tensor | None, owned: bool, scale: Scale, y: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """out + scale * y as one kernel (none when the scale is the host number 1.0 and there is nothing to add to),
    in place when `out` is the node's own buffer; returns the sum and whether it is owned."""
    if isinstance(scale, float):
        if out is None:
            return (y, False) if scale == 1.0 else (y * scale, True)
        return (out.add_(y, alpha=scale) if owned else torch.add(out, y, alpha=scale)), True
    if out is None:
        return y * scale, True
    return (out.addcmul_(scale, y) if owned else torch.addcmul(out, scale, y)), True


class SoftmaxMixer:
    """DARTS: continuous relaxation, all ops mixed with softmax(alpha) weights."""

    hard = False

    def __init__(self) -> None:
        self.tau = 1.0  # unused; kept so every mixer answers set_tau the same way

    def __call__(self, alphas: torch.Tensor, op_names: Sequence[str], unsampled_gradient: bool = True) -> EdgeSample:
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

    def __call__(self, alphas: torch.Tensor, op_names: Sequence[str], unsampled_gradient: bool = True) -> EdgeSample:
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
        zero_ops = frozenset(k for k, name in enumerate(op_names) if name == "none")
        return EdgeSample(weights, [[int(k)] for k in host[:edges]], hard=True, zero_ops=zero_ops,
                          host_weights=[[w] for w in host[edges:2 * edges]], chosen=index,
                          unsampled_gradient=unsampled_gradient)

    def state_dict(self) -> dict:
        generator = self._generator
        state = generator.get_state() if generator is not None else self._pending_state
        return {"tau": self.tau, "seed": self.seed, "generator": state}

    def load_state_dict(self, state: dict) -> None:
        self.tau, self.seed = float(state["tau"]), int(state["seed"])
        self._generator = None
        self._pending_state = state.get("generator")
