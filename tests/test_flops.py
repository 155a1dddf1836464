"""Params / FLOPs counted the way NAS-Bench-201 reports them."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from xautodl.spaces.nas201 import TinyNetwork
from xautodl.utils.flops import count_flops_m, count_params_mb

BEST_C10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def test_published_figures_of_the_best_cifar10_arch():
    net = TinyNetwork(BEST_C10, C=16, N=5, num_classes=10)
    assert round(count_params_mb(net), 3) == 1.289
    assert round(count_flops_m(net, (1, 3, 32, 32)), 2) == 184.73


def test_smallest_and_largest_cells_of_the_space():
    # Only the stem, the two ResNet blocks and the classifier remain when every edge is `none`.
    stem = 3 * 16 * 9 * 32 * 32
    blocks = (16 * 32 * 9 + 32 * 32 * 9 + 16 * 32) * 16 * 16 + (32 * 64 * 9 + 64 * 64 * 9 + 32 * 64) * 8 * 8
    classifier = 64 * 10 + 10
    empty = TinyNetwork("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", C=16, N=5, num_classes=10)
    assert count_flops_m(empty) == pytest.approx((stem + blocks + classifier) / 1e6)
    # Every edge a 3x3 conv adds 6 convs per cell, 5 cells per stage, at the same cost in every stage.
    full = TinyNetwork("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
                       "nor_conv_3x3~2|", C=16, N=5, num_classes=10)
    assert count_flops_m(full) == pytest.approx((stem + blocks + classifier + 3 * 5 * 6 * 9 * 16 * 16 * 32 * 32) / 1e6)


def test_formulas_per_layer_type():
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=True)
    assert count_flops_m(conv, (1, 4, 5, 5)) * 1e6 == pytest.approx(9 * 4 * 6 * 25 + 6 * 25)
    grouped = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2, bias=False)
    assert count_flops_m(grouped, (1, 4, 6, 6)) * 1e6 == pytest.approx(9 * 2 * 8 * 9)
    linear = nn.Linear(7, 3)
    assert count_flops_m(linear, (1, 7)) * 1e6 == pytest.approx(7 * 3 + 3)
    assert count_flops_m(nn.Linear(7, 3, bias=False), (1, 7)) * 1e6 == pytest.approx(7 * 3)
    # NAS-Bench-201 leaves pooling, batch norm and activations out.
    others = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d(3, 1, 1), nn.MaxPool2d(2),
                           nn.AdaptiveAvgPool2d(1))
    assert count_flops_m(others, (1, 4, 8, 8)) == 0


def test_count_is_per_image_and_keeps_the_mode():
    torch.manual_seed(0)
    net = TinyNetwork(BEST_C10, C=4, N=1, num_classes=10)
    net.train()
    net.stem.eval()
    assert count_flops_m(net, (3, 3, 16, 16)) == pytest.approx(count_flops_m(net, (1, 3, 16, 16)))
    assert net.training and net.cells[0].training and not net.stem.training


class NetWithAuxiliary(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.auxiliary_head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))

    def forward(self, x):
        features = self.features(x)
        return self.classifier(features), self.auxiliary_head(features)


def test_auxiliary_head_is_excluded_from_params_and_flops():
    net = NetWithAuxiliary()
    body_params, head_params = 3 * 8 * 9 + 8 * 10 + 10, 8 * 10 + 10
    assert count_params_mb(net) * 1e6 == body_params
    assert count_params_mb(net, exclude_prefixes=()) * 1e6 == body_params + head_params
    body_flops, head_flops = 9 * 3 * 8 * 16 + 8 * 10 + 10, 8 * 10 + 10
    assert count_flops_m(net, (1, 3, 4, 4)) * 1e6 == pytest.approx(body_flops)
    assert count_flops_m(net, (1, 3, 4, 4), exclude_prefixes=()) * 1e6 == pytest.approx(body_flops + head_flops)
    assert count_flops_m(net, (1, 3, 4, 4), exclude_prefixes=("auxiliary_head.2",)) * 1e6 == pytest.approx(body_flops)
