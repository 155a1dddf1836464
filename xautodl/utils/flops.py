"""Parameter and FLOP counts, as NAS-Bench-201 reports them.

NAS-Bench-201 counts, per forward of one image, the multiply-adds of convolutions (k_h * k_w * C_in / groups * C_out
per output position, plus C_out when there is a bias) and of linear layers (in * out, plus out with a bias). Nothing
else counts: not pooling (its counter measures pooling but leaves it out of the sum), batch norm, activations or
additions. This reproduces the published figures, e.g. 184.73 M FLOPs for the best CIFAR-10 cell at C=16, N=5 (counting
the ResNet blocks' 2x2 average pools would give 184.75). The figures are in millions (params: "MB").

The counting runs PyTorch's `FlopCounterMode` with these formulas in place of its defaults (which count 2 FLOPs per
multiply-add and no bias). Ops outside that mapping (attention kernels) keep PyTorch's default formula.
"""
from __future__ import annotations

from math import prod
from typing import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten


def _conv_macs(x_shape, w_shape, bias_shape, _stride, _padding, _dilation, transposed, *args, out_shape=None,
               **kwargs) -> int:
    # w_shape = (C_out, C_in / groups, *kernel): every weight does one multiply-add per output position (per input
    # position for a transposed convolution); a bias adds one per output element.
    positions = x_shape[0] * prod((x_shape if transposed else out_shape)[2:])
    return positions * prod(w_shape) + (prod(out_shape) if bias_shape is not None else 0)


def _mm_macs(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return a_shape[0] * a_shape[1] * b_shape[1]


def _addmm_macs(bias_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return _mm_macs(a_shape, b_shape) + prod(out_shape)


def _bmm_macs(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return a_shape[0] * a_shape[1] * a_shape[2] * b_shape[2]


def _baddbmm_macs(bias_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return _bmm_macs(a_shape, b_shape) + prod(out_shape)


NB201_FORMULAS = {
    aten.convolution: _conv_macs,
    aten.mm: _mm_macs,
    aten.addmm: _addmm_macs,
    aten.bmm: _bmm_macs,
    aten.baddbmm: _baddbmm_macs,
}


def _is_excluded(name: str, exclude_prefixes: Sequence[str]) -> bool:
    return any(name.startswith(prefix) for prefix in exclude_prefixes)


def count_params_mb(model: nn.Module, exclude_prefixes: Sequence[str] = ("auxiliary",)) -> float:
    """Number of parameters / 1e6, leaving out those whose qualified name starts with one of `exclude_prefixes`."""
    return sum(p.numel() for name, p in model.named_parameters() if not _is_excluded(name, exclude_prefixes)) / 1e6


def count_flops_m(model: nn.Module, input_shape: Sequence[int] = (1, 3, 32, 32),
                  exclude_prefixes: Sequence[str] = ("auxiliary",)) -> float:
    """FLOPs (millions of multiply-adds, NAS-Bench-201's way) of one forward, per image of `input_shape`.

    Submodules whose qualified name starts with one of `exclude_prefixes` are not counted. The model runs once in
    eval mode without gradients on zeros of `input_shape` (on the device of its parameters); every submodule's train/eval mode is restored.
    """
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=NB201_FORMULAS)
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(*input_shape, device=device))
    finally:
        for module, training in modes:
            module.training = training
    per_module = counter.get_flop_counts()
    # FlopCounterMode names a module "<root class>.<qualified name>" and credits an op to each enclosing module,
    # so the excluded share is what the outermost excluded modules hold.
    root = type(model).__name__
    # Also left out: modules that compute pooling with convolution kernels (they say so with `flops_uncounted`).
    excluded = [name for name, module in model.named_modules()
                if name and (_is_excluded(name, exclude_prefixes) or getattr(module, "flops_uncounted", False))]
    outermost = [name for name in excluded if not any(name.startswith(other + ".") for other in excluded)]
    excluded_flops = sum(sum(per_module.get(f"{root}.{name}", {}).values()) for name in outermost)
    return (counter.get_total_flops() - excluded_flops) / input_shape[0] / 1e6
