"""The NAS-Bench-201 search supernet in TensorFlow: the same macro network, cell and ops as
`xautodl.spaces.nas201.NB201Supernet`, in NHWC.

Its state dict (`state_dict()` / `load_state_dict()`) uses the PyTorch supernet's names and layouts, so weights move
between the two as they are: a TensorFlow search starts from the PyTorch supernet's initialisation, and its
checkpoint's model loads into the PyTorch supernet.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
import torch

from ..errors import ArchError
from ..spaces.nas201 import NUM_NODES, edge_list, stage_plan
from ..spaces.ops import NB201_OPS
from .layers import BatchNorm, Conv2d, Linear, ReLUConvBN, ResNetBlock, TorchVariable, avg_pool_3x3


def _op(name: str, C: int, affine: bool, track: bool, dtype: Any):
    """(callable x -> op(x), its layer or None) for a NAS-Bench-201 op at stride 1."""
    if name == "none":
        return (lambda x, training: tf.zeros_like(x)), None
    if name == "skip_connect":
        return (lambda x, training: x), None
    if name == "avg_pool_3x3":
        return (lambda x, training: avg_pool_3x3(x)), None
    kernel = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}[name]
    layer = ReLUConvBN(C, C, kernel, 1, (kernel - 1) // 2, affine, track, dtype=dtype)
    return (lambda x, training: layer(x, training=training)), layer


class SearchCell(keras.layers.Layer):
    """A cell whose every edge holds all candidate ops; the sample decides how they mix."""

    def __init__(self, C: int, max_nodes: int, op_names: Sequence[str], affine: bool, track: bool, **kwargs) -> None:
        super().__init__(**kwargs)
        edges = edge_list(max_nodes)
        built = [[_op(name, C, affine, track, self.dtype_policy) for name in op_names] for _ in edges]
        self.calls = [[call for call, _ in ops] for ops in built]
        self.op_layers = [[layer for _, layer in ops] for ops in built]
        self.node_edges = [[(e, source) for e, (target, source) in enumerate(edges) if target == node]
                           for node in range(1, max_nodes)]
        self.built = True

    def call(self, x: tf.Tensor, sample: Any, training: bool = True) -> tf.Tensor:
        nodes = [x]
        for inputs in self.node_edges:
            nodes.append(sample.node([(e, [partial(f, training=training) for f in self.calls[e]], nodes[source])
                                      for e, source in inputs]))
        return nodes[-1]

    def torch_variables(self, prefix: str) -> list[TorchVariable]:
        return [entry for e, layers in enumerate(self.op_layers) for k, layer in enumerate(layers) if layer is not None
                for entry in layer.torch_variables(f"{prefix}edges.{e}.{k}.")]

    def edge_op_variables(self, prefix: str) -> list[tuple[int, int, str]]:
        """(edge, op, state-dict name) of every trainable variable of the cell's ops."""
        return [(e, k, name) for e, layers in enumerate(self.op_layers) for k, layer in enumerate(layers)
                if layer is not None for name, var, _ in layer.torch_variables(f"{prefix}edges.{e}.{k}.")
                if var.trainable]


class TFSupernet(keras.layers.Layer):
    """The NAS-Bench-201 search supernet (C channels, N cells per stage; search cells' BN without affine and with
    `track` running statistics), with one row of op logits per edge in `arch_parameters`."""

    def __init__(self, C: int, N: int, num_classes: int, op_names: Sequence[str] = NB201_OPS,
                 max_nodes: int = NUM_NODES, track: bool = True, dtype: str = "float32", **kwargs) -> None:
        super().__init__(dtype=dtype, **kwargs)
        unknown = [op for op in op_names if op not in NB201_OPS]
        if unknown or not op_names:
            raise ArchError(f"supernet ops {list(op_names)} must be a non-empty subset of {list(NB201_OPS)}")
        self.op_names, self.max_nodes, self.C, self.N = tuple(op_names), max_nodes, C, N
        self.stem_conv = Conv2d(3, C, 3, 1, 1, dtype=self.dtype_policy)
        self.stem_bn = BatchNorm(C, dtype=self.dtype_policy)
        self.layers_, C_prev = [], C
        for channels, is_block in stage_plan(C, N):
            self.layers_.append(ResNetBlock(C_prev, channels, dtype=self.dtype_policy) if is_block else
                                SearchCell(channels, max_nodes, self.op_names, False, track, dtype=self.dtype_policy))
            C_prev = channels
        self.lastact_bn = BatchNorm(C_prev, dtype=self.dtype_policy)
        self.classifier = Linear(C_prev, num_classes, dtype=self.dtype_policy)
        self.arch_parameters = self.add_weight(name="arch_parameters", shape=(len(edge_list(max_nodes)),
                                                                               len(self.op_names)), initializer="zeros")
        self._named = self._torch_variables()
        # The underlying tf.Variables (what a GradientTape watches and the optimisers update).
        self.weight_variables = [var.value for name, var, _ in self._named
                                 if var.trainable and name != "arch_parameters"]
        self.alpha_variable = self.arch_parameters.value
        self.built = True

    def call(self, x: tf.Tensor, sample: Any, training: bool = True) -> tf.Tensor:
        """Logits of an NHWC batch under `sample` (a `xautodl.tf.mixing` sample)."""
        x = self.stem_bn(self.stem_conv(x), training=training)
        for layer in self.layers_:
            x = layer(x, sample=sample, training=training) if isinstance(layer, SearchCell) else layer(x, training=training)
        x = tf.nn.relu(self.lastact_bn(x, training=training))
        return self.classifier(tf.reduce_mean(x, axis=[1, 2]))

    # ------------------------------------------------------------------------------------- PyTorch state dict
    def _torch_variables(self) -> list[TorchVariable]:
        found = self.stem_conv.torch_variables("stem.0.") + self.stem_bn.torch_variables("stem.1.")
        for i, layer in enumerate(self.layers_):
            found += layer.torch_variables(f"cells.{i}.")
        found += self.lastact_bn.torch_variables("lastact.0.") + self.classifier.torch_variables("classifier.")
        return found + [("arch_parameters", self.arch_parameters, "plain")]

    def named_torch_variables(self) -> list[TorchVariable]:
        """(PyTorch state-dict name, variable, layout) of every variable, in the PyTorch supernet's order."""
        return list(self._named)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every variable as the PyTorch supernet's state dict holds it (names, layouts, dtypes)."""
        return {name: torch.from_numpy(np.array(to_torch_layout(var.numpy(), layout), order="C"))
                for name, var, layout in self._named}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Assign a PyTorch supernet's state dict (strict: same names and shapes); RuntimeError saying what
        differs otherwise, as `nn.Module.load_state_dict` does."""
        names = {name for name, _, _ in self._named}
        missing, unexpected = sorted(names - set(state)), sorted(set(state) - names)
        problems = []
        if missing:
            problems.append(f"Missing key(s) in state_dict: {', '.join(missing[:10])}")
        if unexpected:
            problems.append(f"Unexpected key(s) in state_dict: {', '.join(unexpected[:10])}")
        values = {}
        for name, var, layout in self._named:
            if name not in state:
                continue
            value = from_torch_layout(np.asarray(state[name].detach().cpu().numpy() if torch.is_tensor(state[name])
                                                 else state[name]), layout)
            if tuple(value.shape) != tuple(var.shape):
                problems.append(f"size mismatch for {name}: {tuple(value.shape)} given, {tuple(var.shape)} here")
            values[name] = value
        if problems:
            raise RuntimeError("Error(s) in loading state_dict for TFSupernet:\n\t" + "\n\t".join(problems))
        for name, var, _ in self._named:
            var.assign(values[name].astype(var.dtype))

    # ------------------------------------------------------------------------------------- gradient masks
    def weight_masks(self, index: tf.Tensor) -> list[tf.Tensor]:
        """Per weight variable (`weight_variables` order), whether PyTorch's weight step gives it a gradient under
        the GDAS sample `index` (the chosen op of every edge).

        PyTorch computes only the sampled ops and never builds `none`: a weight gets no gradient (and SGD leaves it
        and its momentum alone) when its op was not sampled, when its edge leads to a node that reaches the cell
        output only through `none` edges, or, for everything before the last cell, when the sample has no path of
        non-`none` edges from the cell input to its output (the network's output then does not depend on them).
        """
        edges = edge_list(self.max_nodes)
        last = self.max_nodes - 1
        present = [tf.constant(True)] * len(edges)
        if "none" in self.op_names:
            none = self.op_names.index("none")
            present = [tf.not_equal(index[e], none) for e in range(len(edges))]
        live = {last: tf.constant(True)}
        for node in range(last - 1, -1, -1):
            out = [tf.logical_and(present[e], live[t]) for e, (t, s) in enumerate(edges) if s == node]
            live[node] = tf.reduce_any(tf.stack(out))
        reach = {0: tf.constant(True)}
        for node in range(1, last + 1):
            into = [tf.logical_and(present[e], reach[s]) for e, (t, s) in enumerate(edges) if t == node]
            reach[node] = tf.reduce_any(tf.stack(into))
        through = reach[last]
        by_name: dict[str, tf.Tensor] = {}
        last_layer = len(self.layers_) - 1
        for i, layer in enumerate(self.layers_):
            if isinstance(layer, SearchCell):
                for e, k, name in layer.edge_op_variables(f"cells.{i}."):
                    used = tf.logical_and(tf.equal(index[e], k), live[edges[e][0]])
                    by_name[name] = used if i == last_layer else tf.logical_and(used, through)
        before = ("stem.", "cells.")
        masks = []
        for name, var, _ in self._named:
            if not var.trainable or name == "arch_parameters":
                continue
            masks.append(by_name.get(name, through if name.startswith(before) else tf.constant(True)))
        return masks


def to_torch_layout(value: np.ndarray, layout: str) -> np.ndarray:
    """A TensorFlow variable's value in the PyTorch layout (conv HWIO -> OIHW, linear (in, out) -> (out, in))."""
    if layout == "conv":
        return value.transpose(3, 2, 0, 1)
    if layout == "linear":
        return value.T
    return value


def from_torch_layout(value: np.ndarray, layout: str) -> np.ndarray:
    """Inverse of `to_torch_layout`."""
    if layout == "conv":
        return value.transpose(2, 3, 1, 0)
    if layout == "linear":
        return value.T
    return value
