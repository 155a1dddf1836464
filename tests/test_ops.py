"""The fast forms of ops must equal their textbook definitions: values and gradients, both memory layouts."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xautodl.search.mixing import EdgeSample, GumbelHardMixer, SoftmaxMixer
from xautodl.spaces.ops import DepthwiseConv2d, FactorizedReduce, Zero, from_phases, to_phases

LAYOUTS = [torch.contiguous_format, torch.channels_last]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("side", [16, 10, 9])
@pytest.mark.parametrize("kernel,stride,dilation", [(3, 1, 2), (5, 1, 2), (3, 2, 2), (5, 2, 2), (3, 1, 1),
                                                    (5, 2, 1)])
def test_depthwise_conv_equals_the_plain_dilated_convolution(layout, side, kernel, stride, dilation):
    torch.manual_seed(side + kernel)
    conv = DepthwiseConv2d(6, kernel, stride, dilation).double()
    x = torch.randn(3, 6, side, side + 2, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_()
    out = conv(x)
    expected = F.conv2d(x, conv.weight, stride=stride, padding=dilation * (kernel - 1) // 2, dilation=dilation,
                        groups=6)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected)
    if layout == torch.channels_last:
        assert out.is_contiguous(memory_format=torch.channels_last)
    upstream = torch.randn_like(expected)
    grads = torch.autograd.grad(out, (x, conv.weight), upstream)
    expected_grads = torch.autograd.grad(expected, (x, conv.weight), upstream)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_polyphase_split_round_trips(layout):
    x = torch.arange(2 * 3 * 8 * 6, dtype=torch.float32).reshape(2, 3, 8, 6).contiguous(memory_format=layout)
    phases = to_phases(x, 2)
    assert phases.shape == (8, 3, 4, 3)
    assert torch.equal(phases[(1 * 2 + 0) * 2 + 1], x[1, :, 1::2, 0::2])  # component (1, 0) of sample 1 of 2
    assert torch.equal(from_phases(phases, 2), x)


@pytest.mark.parametrize("side", [8, 7])
def test_factorized_reduce_equals_the_padded_shifted_definition(side):
    torch.manual_seed(0)
    op = FactorizedReduce(4, 6, 2).double().train()
    x = torch.randn(2, 4, side, side, dtype=torch.float64, requires_grad=True)
    relu = F.relu(x)
    shifted = F.pad(relu, (0, 1, 0, 1))[:, :, 1:, 1:]
    expected = op.bn(torch.cat([op.convs[0](relu), op.convs[1](shifted)], dim=1))
    torch.testing.assert_close(op(x), expected)


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def _edge_ops() -> list[nn.Module]:
    return [Zero(2, 2, 1), Scale(2.0), Scale(-3.0), Scale(0.5)]


def _gdas_node_by_definition(weights, chosen, xs, ops):
    """GDAS as published: per edge sum_j (w_j * op_j(x) if j is sampled else w_j), summed over the node's edges."""
    total = 0
    for w, k, x in zip(weights, chosen, xs):
        total = total + sum(w[j] * ops[j](x) if j == k else w[j] for j in range(len(ops)))
    return total


@pytest.mark.parametrize("chosen", [[1, 2], [0, 3], [0, 0], [3, 3]])
def test_gdas_node_equals_the_published_sum_in_value_and_gradient(chosen):
    torch.manual_seed(1)
    logits = torch.randn(2, 4, requires_grad=True)
    probs = F.softmax(logits, dim=-1)
    weights = F.one_hot(torch.tensor(chosen), 4).float() - probs.detach() + probs
    xs = [torch.randn(3, 2, 4, 4, requires_grad=True) for _ in chosen]
    ops = _edge_ops()
    sample = EdgeSample(weights, [[k] for k in chosen], hard=True, zero_ops=frozenset({0}))
    node = sample.node([(e, ops, x) for e, x in enumerate(xs)])
    expected = _gdas_node_by_definition(weights, chosen, xs, ops)
    expected = expected.expand_as(node) if expected.dim() == 0 else expected
    torch.testing.assert_close(node, expected)
    upstream = torch.randn_like(node)
    got = torch.autograd.grad(node, [logits, *xs], upstream, allow_unused=True, retain_graph=True)
    want = torch.autograd.grad(expected, [logits, *xs], upstream, allow_unused=True)
    for g, w in zip(got, want):
        if w is None:
            assert g is None or not g.any()
        else:
            torch.testing.assert_close(g, w)
    assert logits.grad is None and got[0].abs().sum() > 0


def test_softmax_node_mixes_every_op_but_none():
    logits = torch.randn(2, 4, requires_grad=True)
    sample = SoftmaxMixer()(logits, ["none", "a", "b", "c"])
    xs = [torch.randn(3, 2, 4, 4) for _ in range(2)]
    ops = _edge_ops()
    node = sample.node([(e, ops, x) for e, x in enumerate(xs)])
    w = F.softmax(logits, dim=-1)
    expected = sum(w[e, j] * ops[j](x) for e, x in enumerate(xs) for j in range(1, 4))
    torch.testing.assert_close(node, expected)


def test_gumbel_sample_marks_none_as_not_computed():
    sample = GumbelHardMixer(tau=1.0, seed=0)(torch.zeros(3, 4), ["skip", "none", "conv", "none"])
    assert sample.zero_ops == frozenset({1, 3})
    assert all(len(active) == 1 for active in sample.active)
