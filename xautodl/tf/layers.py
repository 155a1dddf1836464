"""Keras layers that compute what the PyTorch ops of `xautodl.spaces.ops` compute, in the NHWC layout.

Where TensorFlow's conventions differ from PyTorch's, these layers follow PyTorch's:
- padding is explicit and symmetric (TensorFlow's "SAME" pads a stride-2 convolution at the bottom/right only);
- BatchNorm: `momentum` is PyTorch's (0.1: running = 0.9 running + 0.1 batch; Keras calls that momentum 0.99 /
  0.9), eps 1e-5, the batch variance normalises with 1/n but the running variance is updated with the unbiased
  1/(n-1) one, `track_running_stats=False` keeps no statistics, and `num_batches_tracked` is counted;
- 3x3 average pooling leaves the padded positions out of the average (`count_include_pad=False`).

Every layer names its variables as the PyTorch module's state dict does (`torch_variables(prefix)`: (name,
variable, layout) with layout "conv" (HWIO here, OIHW there), "linear" (in x out here, out x in there) or "plain").
Every layer creates its weights in `__init__` and is built from then on (Keras then skips its symbolic first-call
build, which made tracing a step several times slower). Weights start at zero: a supernet is initialised from a PyTorch state dict (`TFSupernet.load_state_dict`).
"""
from __future__ import annotations

import keras
import tensorflow as tf

TorchVariable = tuple[str, keras.Variable, str]  # (state-dict name, variable, layout)


class Conv2d(keras.layers.Layer):
    """k x k convolution without bias, stride `stride`, `padding` zeros on every side (PyTorch's nn.Conv2d)."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int = 1, padding: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stride, self.padding = stride, padding
        self.kernel = self.add_weight(name="kernel", shape=(kernel, kernel, C_in, C_out), initializer="zeros")
        self.built = True

    def call(self, x: tf.Tensor) -> tf.Tensor:
        p = self.padding
        return tf.nn.conv2d(x, self.kernel, self.stride, padding=[[0, 0], [p, p], [p, p], [0, 0]])

    def torch_variables(self, prefix: str) -> list[TorchVariable]:
        return [(f"{prefix}weight", self.kernel, "conv")]


class BatchNorm(keras.layers.Layer):
    """nn.BatchNorm2d(C, affine=affine, track_running_stats=track) with PyTorch's conventions (module docstring)."""

    def __init__(self, C: int, affine: bool = True, track: bool = True, momentum: float = 0.1, eps: float = 1e-5,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.affine, self.track, self.momentum, self.eps = affine, track, momentum, eps
        if affine:
            self.gamma = self.add_weight(name="gamma", shape=(C,), initializer="ones")
            self.beta = self.add_weight(name="beta", shape=(C,), initializer="zeros")
        if track:
            self.running_mean = self.add_weight(name="running_mean", shape=(C,), initializer="zeros", trainable=False)
            self.running_var = self.add_weight(name="running_var", shape=(C,), initializer="ones", trainable=False)
            self.num_batches_tracked = self.add_weight(name="num_batches_tracked", shape=(), initializer="zeros",
                                                       dtype="int64", trainable=False)
        self.built = True

    def call(self, x: tf.Tensor, training: bool = True) -> tf.Tensor:
        if training or not self.track:
            mean = tf.reduce_mean(x, axis=[0, 1, 2])
            var = tf.reduce_mean(tf.square(x - mean), axis=[0, 1, 2])  # biased, as PyTorch normalises
            if training and self.track:
                self._update_statistics(x, mean, var)
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean) * tf.math.rsqrt(var + self.eps)
        return y * self.gamma + self.beta if self.affine else y

    def _update_statistics(self, x: tf.Tensor, mean: tf.Tensor, var: tf.Tensor) -> None:
        count = tf.cast(tf.size(x) // tf.shape(x)[-1], x.dtype)
        m = self.momentum
        self.running_mean.assign((1 - m) * self.running_mean + m * tf.stop_gradient(mean))
        # PyTorch keeps the unbiased variance n/(n-1) * var in its running statistics.
        self.running_var.assign((1 - m) * self.running_var + m * tf.stop_gradient(var) * count / (count - 1))
        self.num_batches_tracked.assign_add(1)

    def torch_variables(self, prefix: str) -> list[TorchVariable]:
        found = []
        if self.affine:
            found += [(f"{prefix}weight", self.gamma, "plain"), (f"{prefix}bias", self.beta, "plain")]
        if self.track:
            found += [(f"{prefix}running_mean", self.running_mean, "plain"),
                      (f"{prefix}running_var", self.running_var, "plain"),
                      (f"{prefix}num_batches_tracked", self.num_batches_tracked, "plain")]
        return found


class Linear(keras.layers.Layer):
    """nn.Linear(C_in, C_out): x @ W + b."""

    def __init__(self, C_in: int, C_out: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kernel = self.add_weight(name="kernel", shape=(C_in, C_out), initializer="zeros")
        self.bias = self.add_weight(name="bias", shape=(C_out,), initializer="zeros")
        self.built = True

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.matmul(x, self.kernel) + self.bias

    def torch_variables(self, prefix: str) -> list[TorchVariable]:
        return [(f"{prefix}weight", self.kernel, "linear"), (f"{prefix}bias", self.bias, "plain")]


class ReLUConvBN(keras.layers.Layer):
    """ReLU -> Conv(k, stride, padding) -> BN; PyTorch names `1.weight` (conv) and `2.*` (BN)."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, affine: bool = True,
                 track: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.conv = Conv2d(C_in, C_out, kernel, stride, padding, dtype=self.dtype_policy)
        self.bn = BatchNorm(C_out, affine, track, dtype=self.dtype_policy)
        self.built = True

    def call(self, x: tf.Tensor, training: bool = True) -> tf.Tensor:
        return self.bn(self.conv(tf.nn.relu(x)), training=training)

    def torch_variables(self, prefix: str) -> list[TorchVariable]:
        return self.conv.torch_variables(f"{prefix}1.") + self.bn.torch_variables(f"{prefix}2.")


def avg_pool_3x3(x: tf.Tensor) -> tf.Tensor:
    """3x3 average pooling, stride 1, padding 1, padded positions left out of the average: TensorFlow's "SAME"
    pooling pads symmetrically at stride 1 and averages over the real inputs only."""
    return tf.nn.avg_pool2d(x, 3, 1, "SAME")


class ResNetBlock(keras.layers.Layer):
    """The stride-2 ResNet block between stages: two ReLUConvBN, shortcut AvgPool2d(2) + Conv1x1."""

    def __init__(self, C_in: int, C_out: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.conv_a = ReLUConvBN(C_in, C_out, 3, 2, 1, dtype=self.dtype_policy)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1, dtype=self.dtype_policy)
        self.shortcut = Conv2d(C_in, C_out, 1, dtype=self.dtype_policy)
        self.built = True

    def call(self, x: tf.Tensor, training: bool = True) -> tf.Tensor:
        pooled = tf.nn.avg_pool2d(x, 2, 2, "VALID")
        return self.shortcut(pooled) + self.conv_b(self.conv_a(x, training=training), training=training)

    def torch_variables(self, prefix: str) -> list[TorchVariable]:
        return (self.conv_a.torch_variables(f"{prefix}conv_a.") + self.conv_b.torch_variables(f"{prefix}conv_b.")
                + self.shortcut.torch_variables(f"{prefix}shortcut.1."))
