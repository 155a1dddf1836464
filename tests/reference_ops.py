"""The ops' textbook forms: what the speed tricks of `xautodl.spaces.ops` compute, written the plain way.

- A dilated depthwise convolution is PyTorch's dilated convolution (the package runs it undilated on polyphase
  components on CPU).
- 3x3 average pooling that leaves the padded positions out of the average is PyTorch's pooling (the package runs
  it as a depthwise convolution with an all-ones kernel, scaled, on CPU).
- An op that starts with a ReLU computes its own (the package's cells share one ReLU per node): the textbook
  mixers of `reference_mixing` call every op on the node's tensor.

`textbook_ops(module)` puts the textbook forms in place of the fast ones, `textbook_twin(supernet)` also the mixer's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reference_mixing import TextbookGumbelMixer, TextbookSoftmaxMixer
from xautodl.search.mixing import GumbelHardMixer
from xautodl.spaces.ops import AvgPool3x3, DepthwiseConv2d


def depthwise_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The depthwise (dilated) convolution of `conv`'s weight, by PyTorch's dilated convolution."""
    return F.conv2d(x, conv.weight, stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                    groups=conv.groups)


def avg_pool_3x3(x: torch.Tensor, stride: int) -> torch.Tensor:
    """3x3 average pooling, padding 1, the padded positions left out of the average."""
    return F.avg_pool2d(x, 3, stride=stride, padding=1, count_include_pad=False)


def own_relu(op: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An op that starts with a ReLU on a tensor, computing its own ReLU: a sequential op runs its layers in order
    (the reducing skip connection's own form is in tests/test_ops.py)."""
    return nn.Sequential.forward(op, x) if isinstance(op, nn.Sequential) else op(x)


class TextbookDepthwiseConv(nn.Module):
    """`DepthwiseConv2d` in its textbook form, with the same weight (a parameter of the same name)."""

    def __init__(self, conv: DepthwiseConv2d) -> None:
        super().__init__()
        self.weight = conv.weight
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_conv(self, x)


class TextbookAvgPool(nn.Module):
    """`AvgPool3x3` in its textbook form."""

    def __init__(self, pool: AvgPool3x3) -> None:
        super().__init__()
        self.stride = pool.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return avg_pool_3x3(x, self.stride)


def textbook_ops(module: nn.Module) -> nn.Module:
    """`module` (changed in place and returned) with the textbook form of every op inside; parameters and buffers
    keep their names and order."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, DepthwiseConv2d):
                setattr(parent, name, TextbookDepthwiseConv(child))
            elif isinstance(child, AvgPool3x3):
                setattr(parent, name, TextbookAvgPool(child))
    return module


def textbook_twin(model: nn.Module) -> nn.Module:
    """A supernet (changed in place and returned) with the textbook form of every op and of its mixer, which
    draws the same samples as the one it replaces."""
    mixer = model.mixer
    model.mixer = TextbookGumbelMixer(mixer.tau, mixer.seed) if isinstance(mixer, GumbelHardMixer) \
        else TextbookSoftmaxMixer()
    return textbook_ops(model)
