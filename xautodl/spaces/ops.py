"""The one registry of primitive operations, shared by the NAS-Bench-201 and the NASNet (DARTS) spaces.

Every op is built as `OPS[name](C_in, C_out, stride, affine, track_running_stats)` and maps an
(N, C_in, H, W) tensor to (N, C_out, H / stride, W / stride). In a search cell an op reads a `NodeInput` instead
(`NodeInput.apply(op)`): the ops that start with a ReLU then share that node's one ReLU.

Three speed tricks compute textbook definitions with fewer or faster kernels: a node's one ReLU shared by its ops,
a dilated depthwise convolution run on polyphase components, average pooling run as a convolution.
`tests/reference_ops.py` holds the textbook forms the tests compare them with.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArchError

OpFactory = Callable[[int, int, int, bool, bool], nn.Module]


def _bn(channels: int, affine: bool, track: bool) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, affine=affine, track_running_stats=track)


class NodeInput:
    """A search-cell node as the ops on its outgoing edges read it: its tensor, and the ReLU of that tensor,
    computed once, on first use, for every op that starts with one.

    DARTS on NAS-Bench-201 then computes 3 ReLUs per cell instead of 12, and keeps 3 activations for the backward
    instead of 12. The cell owns these objects (one per node), so the sharing never outlives the cell's forward. A
    node whose value is an earlier node's tensor (a GDAS node whose one sampled op is a skip) shares that node's
    activations too (`earlier`).
    """

    __slots__ = ("value", "_activated")

    def __init__(self, value: torch.Tensor, earlier: Sequence["NodeInput"] = ()) -> None:
        self.value = value
        same = next((node for node in earlier if node.value is value), None)
        self._activated: dict[type, torch.Tensor] = {} if same is None else same._activated

    def activated(self, activation: nn.Module) -> torch.Tensor:
        """activation(value), computed once per kind of activation (a ReLU; tests may swap in a smooth one)."""
        kind = type(activation)
        if kind not in self._activated:
            # Out of place even where the op's own layer is an in-place ReLU: other edges read `value`.
            self._activated[kind] = F.relu(self.value) if kind is nn.ReLU else activation(self.value)
        return self._activated[kind]

    def apply(self, op: nn.Module) -> torch.Tensor:
        """op(node) through `op.__call__` (so hooks fire); an op that starts with a ReLU gets this object and uses
        the shared ReLU, every other op gets the tensor."""
        return op(self) if getattr(op, "reads_node_input", False) else op(self.value)


class ReLUFirst(nn.Sequential):
    """A sequential op whose first layer is the ReLU of its input; it also reads a `NodeInput` (shared ReLU)."""

    reads_node_input = True

    @property
    def activation(self) -> nn.Module:
        """The first layer (a ReLU; tests may swap in a smooth activation)."""
        return self[0]

    def forward(self, x: torch.Tensor | NodeInput) -> torch.Tensor:
        first, *rest = self._modules.values()
        out = x.activated(first) if isinstance(x, NodeInput) else first(x)
        for layer in rest:
            out = layer(out)
        return out


class ReLUConvBN(ReLUFirst):
    """ReLU -> Conv(k, stride, padding, dilation, no bias) -> BN."""

    def __init__(self, C_in: int, C_out: int, kernel: int | tuple[int, int], stride: int, padding, dilation: int = 1,
                 affine: bool = True, track: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel, stride=stride, padding=padding, dilation=dilation, bias=False),
            _bn(C_out, affine, track),
        )


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def to_phases(x: torch.Tensor, d: int) -> torch.Tensor:
    """(N, C, H, W) -> (d*d*N, C, H/d, W/d): the d x d polyphase components stacked along the batch (layout kept)."""
    n, c, h, w = x.shape
    if _is_channels_last(x):
        y = x.permute(0, 2, 3, 1).reshape(n, h // d, d, w // d, d, c).permute(2, 4, 0, 1, 3, 5)
        return y.reshape(d * d * n, h // d, w // d, c).permute(0, 3, 1, 2)
    return x.reshape(n, c, h // d, d, w // d, d).permute(3, 5, 0, 1, 2, 4).reshape(d * d * n, c, h // d, w // d)


def from_phases(y: torch.Tensor, d: int) -> torch.Tensor:
    """Inverse of `to_phases`."""
    m, c, h, w = y.shape
    n = m // (d * d)
    if _is_channels_last(y):
        z = y.permute(0, 2, 3, 1).reshape(d, d, n, h, w, c).permute(2, 3, 0, 4, 1, 5)
        return z.reshape(n, h * d, w * d, c).permute(0, 3, 1, 2)
    return y.reshape(d, d, n, c, h, w).permute(2, 3, 4, 0, 5, 1).reshape(n, c, h * d, w * d)


class DepthwiseConv2d(nn.Conv2d):
    """Depthwise k x k convolution ("same" padding, no bias); on CPU a dilated one runs undilated on polyphase parts.

    A dilation-d convolution only ever combines pixels whose coordinates agree modulo d. With stride 1 it equals the
    undilated convolution applied to each of the d x d polyphase components (stacked along the batch); with stride d
    it equals the undilated convolution of the (0, 0) component alone. Same values and gradients, but PyTorch's CPU
    kernels for dilated depthwise convolutions are slow, above all backward: this is 2-10x faster there (see
    benchmarks/README.md). Small maps (a component smaller than the kernel), odd sizes and CUDA use the plain kernel.
    """

    def __init__(self, channels: int, kernel: int, stride: int, dilation: int):
        super().__init__(channels, channels, kernel, stride=stride, padding=dilation * (kernel - 1) // 2,
                         dilation=dilation, groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d, kernel, stride = self.dilation[0], self.kernel_size[0], self.stride[0]
        if d == 1 or x.device.type != "cpu" or x.dim() != 4:
            return super().forward(x)
        height, width = x.shape[-2:]
        padding = (kernel - 1) // 2
        if stride == d:
            out = F.conv2d(x[:, :, ::d, ::d], self.weight, padding=padding, groups=self.groups)
            # On odd sizes the strided view no longer looks channels-last to PyTorch; keep the caller's layout.
            return out.contiguous(memory_format=torch.channels_last) if _is_channels_last(x) else out
        if stride == 1 and height % d == 0 and width % d == 0 and min(height, width) // d >= kernel:
            out = F.conv2d(to_phases(x, d), self.weight, padding=padding, groups=self.groups)
            return from_phases(out, d)
        return super().forward(x)


class SepConv(ReLUFirst):
    """ReLU -> depthwise conv k x k (optionally dilated) -> pointwise 1x1 -> BN (DARTS `dil_conv`, half a `sep_conv`)."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, dilation: int,
                 affine: bool = True, track: bool = True, relu_inplace: bool = False):
        if padding != dilation * (kernel - 1) // 2:
            raise ValueError(f"SepConv needs 'same' padding dilation * (kernel - 1) / 2 = "
                             f"{dilation * (kernel - 1) // 2}, got {padding}")
        super().__init__(
            nn.ReLU(inplace=relu_inplace),
            DepthwiseConv2d(C_in, kernel, stride, dilation),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            _bn(C_out, affine, track),
        )


class DualSepConv(nn.Sequential):
    """DARTS `sep_conv_kxk`: two stacked SepConv blocks, the first carries the stride."""

    reads_node_input = True  # passed on to the first block

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, affine: bool = True, track: bool = True):
        padding = (kernel - 1) // 2
        super().__init__(
            SepConv(C_in, C_in, kernel, stride, padding, 1, affine, track),
            # Its input is the first block's BN output, which nothing else reads (BN's backward needs its input,
            # not its output): the ReLU may overwrite it, one activation less to store.
            SepConv(C_in, C_out, kernel, 1, padding, 1, affine, track, relu_inplace=True),
        )

    @property
    def activation(self) -> nn.Module:
        return self[0].activation


class Conv1xkKx1(ReLUFirst):
    """ReLU -> conv 1 x k -> conv k x 1 -> BN (`conv_3x1_1x3` in published genotypes)."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, affine: bool = True, track: bool = True):
        pad = (kernel - 1) // 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, (1, kernel), stride=(1, stride), padding=(0, pad), bias=False),
            nn.Conv2d(C_in, C_out, (kernel, 1), stride=(stride, 1), padding=(pad, 0), bias=False),
            _bn(C_out, affine, track),
        )


class Zero(nn.Module):
    """The `none` op: zeros of the output shape (kept so that a cell's node count stays fixed)."""

    def __init__(self, C_in: int, C_out: int, stride: int):
        super().__init__()
        self.C_out, self.stride = C_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        h_out, w_out = -(-h // self.stride), -(-w // self.stride)
        if _is_channels_last(x):
            # In the input's layout: a node whose every edge is `none` is this tensor, and a contiguous one would
            # make the cell's concatenated output, and every later cell, contiguous in a channels-last network.
            return torch.empty(n, self.C_out, h_out, w_out, dtype=x.dtype, device=x.device,
                               memory_format=torch.channels_last).zero_()
        return x.new_zeros(n, self.C_out, h_out, w_out)


class FactorizedReduce(nn.Module):
    """The reducing skip connection: ReLU, then two 1x1 convs on the two offset stride-2 grids, concatenated, BN.

    The second conv reads the grid shifted by one pixel (zero-padded at the bottom/right edge on odd sizes).
    """

    reads_node_input = True

    def __init__(self, C_in: int, C_out: int, stride: int = 2, affine: bool = True, track: bool = True):
        super().__init__()
        if stride != 2:
            raise ValueError(f"FactorizedReduce reduces with stride 2, got {stride} (a stride-1 channel change is "
                             "ChannelProjection)")
        self.stride = stride
        self.relu = nn.ReLU(inplace=False)
        half = C_out // 2
        self.convs = nn.ModuleList([
            nn.Conv2d(C_in, half, 1, stride=2, bias=False),
            nn.Conv2d(C_in, C_out - half, 1, stride=2, bias=False),
        ])
        self.pad = nn.ConstantPad2d((0, 1, 0, 1), 0.0)
        self.bn = _bn(C_out, affine, track)

    @property
    def activation(self) -> nn.Module:
        return self.relu

    def forward(self, x: torch.Tensor | NodeInput) -> torch.Tensor:
        x = x.activated(self.relu) if isinstance(x, NodeInput) else self.relu(x)
        # On even sizes the shifted grid's stride-2 samples never reach the zero padding, so only odd sizes pay for
        # the padded copy.
        odd = x.shape[-2] % 2 or x.shape[-1] % 2
        shifted = self.pad(x)[:, :, 1:, 1:] if odd else x[:, :, 1:, 1:]
        if x.device.type == "cpu":
            # A stride-2 1x1 conv is a stride-1 1x1 conv of the stride-2 subgrid; computed that way on CPU because
            # PyTorch 2.14's CPU backward of a stride-2 1x1 conv in the channels-last layout corrupts memory at
            # some shapes (8 input channels on a 56x56 map crash; tests/test_ops.py has the case). Same values.
            grids = (x[:, :, ::2, ::2], shifted[:, :, ::2, ::2])
            out = torch.cat([F.conv2d(grid, conv.weight) for conv, grid in zip(self.convs, grids)], dim=1)
        else:
            out = torch.cat([self.convs[0](x), self.convs[1](shifted)], dim=1)
        return self.bn(out)


class ChannelProjection(nn.Sequential):
    """A stride-1 skip connection that changes the channel count: 1x1 conv -> BN, no ReLU (as the original's
    stride-1 `FactorizedReduce`)."""

    def __init__(self, C_in: int, C_out: int, affine: bool = True, track: bool = True):
        super().__init__(nn.Conv2d(C_in, C_out, 1, bias=False), _bn(C_out, affine, track))


class AvgPool3x3(nn.Module):
    """3x3 average pooling with padding 1 whose average leaves the padded positions out (`count_include_pad=False`).

    On CPU it is computed as a depthwise convolution with an all-ones kernel, scaled by 1 / (number of real inputs
    under the window): the same values as `nn.AvgPool2d(3, stride, 1, count_include_pad=False)`, but about ten times
    faster forward and backward than PyTorch's CPU kernel for that case, which dominated a GDAS search step. Other
    devices use PyTorch's pooling kernel: one kernel launch instead of two, where launches are what a step costs.
    """

    flops_uncounted = True  # NAS-Bench-201 counts no pooling (see xautodl.utils.flops)

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride
        self._constants: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _kernel_and_scale(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        channels, height, width = x.shape[1:]
        key = (channels, height, width, x.device, x.dtype)
        if key not in self._constants:
            kernel = x.new_ones(channels, 1, 3, 3)
            counts = F.conv2d(x.new_ones(1, 1, height, width), x.new_ones(1, 1, 3, 3), stride=self.stride, padding=1)
            self._constants[key] = (kernel, counts.reciprocal())
        return self._constants[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            return F.avg_pool2d(x, 3, self.stride, 1, count_include_pad=False)
        kernel, scale = self._kernel_and_scale(x)
        return F.conv2d(x, kernel, stride=self.stride, padding=1, groups=x.shape[1]) * scale


class Pooling(nn.Module):
    """3x3 average or max pooling (padding 1); a 1x1 ReLUConvBN first when the channel count changes."""

    def __init__(self, C_in: int, C_out: int, stride: int, mode: str, affine: bool = True, track: bool = True):
        super().__init__()
        self.preprocess = None if C_in == C_out else ReLUConvBN(C_in, C_out, 1, 1, 0, 1, affine, track)
        if mode == "avg":
            self.pool = AvgPool3x3(stride)
        elif mode == "max":
            self.pool = nn.MaxPool2d(3, stride=stride, padding=1)
        else:
            raise ValueError(f"pooling mode must be 'avg' or 'max', got {mode!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocess is not None:
            x = self.preprocess(x)
        return self.pool(x)


def _skip(C_in: int, C_out: int, stride: int, affine: bool, track: bool) -> nn.Module:
    if stride == 1:
        return nn.Identity() if C_in == C_out else ChannelProjection(C_in, C_out, affine, track)
    return FactorizedReduce(C_in, C_out, stride, affine, track)


OPS: dict[str, OpFactory] = {
    "none": lambda ci, co, s, a, t: Zero(ci, co, s),
    "skip_connect": _skip,
    "avg_pool_3x3": lambda ci, co, s, a, t: Pooling(ci, co, s, "avg", a, t),
    "max_pool_3x3": lambda ci, co, s, a, t: Pooling(ci, co, s, "max", a, t),
    # NAS-Bench-201 convolutions
    "nor_conv_1x1": lambda ci, co, s, a, t: ReLUConvBN(ci, co, 1, s, 0, 1, a, t),
    "nor_conv_3x3": lambda ci, co, s, a, t: ReLUConvBN(ci, co, 3, s, 1, 1, a, t),
    # DARTS / NASNet convolutions
    "sep_conv_3x3": lambda ci, co, s, a, t: DualSepConv(ci, co, 3, s, a, t),
    "sep_conv_5x5": lambda ci, co, s, a, t: DualSepConv(ci, co, 5, s, a, t),
    "sep_conv_7x7": lambda ci, co, s, a, t: DualSepConv(ci, co, 7, s, a, t),
    "dil_conv_3x3": lambda ci, co, s, a, t: SepConv(ci, co, 3, s, 2, 2, a, t),
    "dil_conv_5x5": lambda ci, co, s, a, t: SepConv(ci, co, 5, s, 4, 2, a, t),
    "conv_3x1_1x3": lambda ci, co, s, a, t: Conv1xkKx1(ci, co, 3, s, a, t),
}

# Names used by the original tool for the same ops.
OP_ALIASES: dict[str, str] = {
    "dua_sepc_3x3": "sep_conv_3x3",
    "dua_sepc_5x5": "sep_conv_5x5",
    "dil_sepc_3x3": "dil_conv_3x3",
    "dil_sepc_5x5": "dil_conv_5x5",
}

NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# Ops without weights: a cell made mostly of them is DARTS' known failure mode ("collapse"). skip_connect with
# stride 2 is a factorized reduce, which has weights; it is counted here all the same, as collapse studies do.
PARAMETER_FREE_OPS = frozenset({"none", "skip_connect", "avg_pool_3x3", "max_pool_3x3"})


def parameter_free_share(ops: Sequence[str]) -> float:
    """The share (0 to 1) of `ops` that have no weights (`PARAMETER_FREE_OPS`)."""
    return sum(op in PARAMETER_FREE_OPS for op in ops) / len(ops)
DARTS_OPS: tuple[str, ...] = ("none", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
                              "dil_conv_5x5", "avg_pool_3x3", "max_pool_3x3")


def canonical_op_name(name: str) -> str:
    """Map an op name or one of the original tool's aliases to its canonical name; reject unknown names."""
    name = OP_ALIASES.get(name, name)
    if name not in OPS:
        known = ", ".join(sorted(OPS) + sorted(OP_ALIASES))
        raise ArchError(f"unknown op {name!r}; known ops: {known}")
    return name


def build_op(name: str, C_in: int, C_out: int, stride: int, affine: bool = True, track: bool = True) -> nn.Module:
    """Build the op `name` (canonical or alias) mapping C_in -> C_out channels with the given stride."""
    return OPS[canonical_op_name(name)](C_in, C_out, stride, affine, track)
