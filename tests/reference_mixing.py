"""The edge mixers' textbook forms: what `xautodl.search.mixing` computes, written as the formulas are published.

Every op of an edge is called on the edge's input tensor (so each computes its own ReLU), `none` included, and the
terms are added one by one:

- DARTS: node = sum over edges e of sum over ops k of softmax(alpha)[e, k] * op_k(x_e).
- GDAS: a hard Gumbel-softmax sample per edge, c_e = argmax((log_softmax(alpha) + g) / tau) with standard Gumbel
  noise g, and straight-through weights h = one_hot(c) - p.detach() + p (p the softmax of those logits);
  node = sum over edges e of h[e, c_e] * op_{c_e}(x_e), plus, under the NAS-Bench-201 rule (`unsampled_gradient`),
  h[e, k] for every other op k: zero in value, it carries the gradient to every alpha of the edge.

The reference mixers plug into the package's supernets in place of theirs (`tests/reference_ops.textbook_twin`).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

EdgeOutput = Callable[[int, Sequence[nn.Module], torch.Tensor], torch.Tensor]  # (edge, its ops, input) -> output


def softmax_edge(alphas: torch.Tensor) -> EdgeOutput:
    """DARTS: edge e outputs sum over its ops k of softmax(alpha)[e, k] * op_k(x)."""
    weights = F.softmax(alphas, dim=-1)

    def edge_output(e: int, ops: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
        out = weights[e, 0] * ops[0](x)
        for k in range(1, len(ops)):
            out = out + weights[e, k] * ops[k](x)
        return out

    return edge_output


def gumbel_edge(weights: torch.Tensor, chosen: Sequence[int], unsampled_gradient: bool) -> EdgeOutput:
    """GDAS: edge e outputs h[e, c_e] * op_{c_e}(x) (+ h[e, k] for every other op k under `unsampled_gradient`)."""
    def edge_output(e: int, ops: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
        c = chosen[e]
        out = weights[e, c] * ops[c](x)
        if unsampled_gradient:
            for k in range(len(ops)):
                if k != c:
                    out = out + weights[e, k]
        return out

    return edge_output


def hard_gumbel_softmax(alphas: torch.Tensor, tau: float, generator: torch.Generator
                        ) -> tuple[torch.Tensor, list[int]]:
    """(h, c): the straight-through weights and the sampled op of every edge. The Gumbel noise is drawn as
    g = -log(E), E ~ Exp(1) (the same law as -log(-log(U)), U ~ Uniform(0, 1)), as the package draws it, so that
    one seed gives both the same sample."""
    gumbel = -torch.empty_like(alphas).exponential_(generator=generator).log()
    probs = F.softmax((F.log_softmax(alphas, dim=-1) + gumbel) / tau, dim=-1)
    chosen = probs.argmax(dim=-1)
    one_hot = F.one_hot(chosen, alphas.shape[-1]).to(probs.dtype)
    return one_hot - probs.detach() + probs, chosen.tolist()


class TextbookSample:
    """A node is the sum of its edges' outputs; the edges come from the package's cells (inputs as NodeInputs)."""

    def __init__(self, edge_output: EdgeOutput, weights: torch.Tensor, chosen_ops: list[int] | None = None) -> None:
        self.edge_output, self.weights, self.chosen_ops = edge_output, weights, chosen_ops

    def node(self, edges) -> torch.Tensor:
        total = 0
        for e, ops, node_input in edges:
            total = total + self.edge_output(e, ops, node_input.value)
        return total


class TextbookSoftmaxMixer:
    """DARTS's mixer in its textbook form."""

    tau = None

    def __call__(self, alphas: torch.Tensor, op_names: Sequence[str], unsampled_gradient: bool = True
                 ) -> TextbookSample:
        return TextbookSample(softmax_edge(alphas), F.softmax(alphas, dim=-1))


class TextbookGumbelMixer:
    """GDAS's mixer in its textbook form: a generator seeded with `seed` on the alphas' device, as the package's."""

    def __init__(self, tau: float, seed: int) -> None:
        self.tau, self.seed = tau, seed
        self.generator: torch.Generator | None = None

    def __call__(self, alphas: torch.Tensor, op_names: Sequence[str], unsampled_gradient: bool = True
                 ) -> TextbookSample:
        if self.generator is None:
            self.generator = torch.Generator(device=alphas.device).manual_seed(self.seed)
        weights, chosen = hard_gumbel_softmax(alphas, self.tau, self.generator)
        return TextbookSample(gumbel_edge(weights, chosen, unsampled_gradient), weights, chosen)
