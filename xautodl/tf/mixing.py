"""Edge samples in TensorFlow: the formulas of `xautodl.search.mixing`, made inside a `tf.function` step.

A cell node calls `sample.node(edges)` with its incoming edges as (edge index, the edge's candidate ops as
callables, the edge's input tensor), as in the PyTorch cell.

- `SoftmaxSample` (DARTS-V1): node = sum over edges e and ops k != none of softmax(alpha)[e, k] * op_k(x_e).
- `GumbelSample` (GDAS): c_e = argmax((log_softmax(alpha) + g) / tau), h = one_hot(c) - p.detach() + p with
  p = softmax((log_softmax(alpha) + g) / tau); node = sum over edges of h[e, c_e] * op_{c_e}(x_e), computed with
  `tf.switch_case`, so only the sampled op runs; in the architecture step plus the value-zero sum of h[e, k] over
  the other ops (`route`), which sends the straight-through gradient to every alpha of the edge, as the PyTorch
  NAS-Bench-201 cell does.
"""
from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf

Edge = tuple[int, Sequence[Callable[[tf.Tensor], tf.Tensor]], tf.Tensor]


def gumbel_noise(generator: tf.random.Generator, shape, dtype) -> tf.Tensor:
    """Standard Gumbel noise -log(-log(U)). U is drawn from [smallest normal number, 1), so the noise is always
    finite (the PyTorch mixer redraws the rare infinite draw instead)."""
    tiny = tf.experimental.numpy.finfo(dtype.as_numpy_dtype).tiny
    uniform = generator.uniform(shape, minval=tiny, maxval=1.0, dtype=dtype)
    return -tf.math.log(-tf.math.log(uniform))


class SoftmaxSample:
    """DARTS-V1: every op but `none` weighted by softmax(alpha)[e]."""

    def __init__(self, alphas: tf.Tensor, op_names: Sequence[str]) -> None:
        self.weights = tf.nn.softmax(alphas, axis=-1)
        self.computed = [k for k, name in enumerate(op_names) if name != "none"]

    def node(self, edges: Sequence[Edge]) -> tf.Tensor:
        total = None
        for e, ops, x in edges:
            for k in self.computed:
                term = self.weights[e, k] * ops[k](x)
                total = term if total is None else total + term
        return total


class GumbelSample:
    """GDAS: one hard Gumbel-softmax sample per edge (module docstring); `route` adds the straight-through terms of
    the unsampled ops (the architecture step)."""

    def __init__(self, alphas: tf.Tensor, tau: tf.Tensor, noise: tf.Tensor, route: bool) -> None:
        probs = tf.nn.softmax((tf.nn.log_softmax(alphas, axis=-1) + noise) / tau, axis=-1)
        self.index = tf.argmax(probs, axis=-1, output_type=tf.int32)
        self.one_hot = tf.one_hot(self.index, alphas.shape[-1], dtype=alphas.dtype)
        self.weights = self.one_hot - tf.stop_gradient(probs) + probs
        self.route = route
        # Per edge, the weight of its sampled op and the sum of the others' (zero in value).
        self.chosen = tf.reduce_sum(self.weights * self.one_hot, axis=-1)
        self.unused = tf.reduce_sum(self.weights * (1 - self.one_hot), axis=-1)

    def node(self, edges: Sequence[Edge]) -> tf.Tensor:
        total = tf.reduce_sum(tf.gather(self.unused, [e for e, _, _ in edges])) if self.route else None
        for e, ops, x in edges:
            branches = [lambda op=op: op(x) for op in ops]
            term = self.chosen[e] * tf.switch_case(self.index[e], branches)
            total = term if total is None else total + term
        return total
