"""The fast forms of ops must equal their textbook definitions: values and gradients, both memory layouts."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xautodl.search.mixing import EdgeSample, GumbelHardMixer, SoftmaxMixer
from xautodl.spaces.nas201 import NB201_OPS, SearchCell
from xautodl.spaces.ops import DepthwiseConv2d, FactorizedReduce, Zero, build_op, from_phases, to_phases

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


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("side", [8, 7])
def test_factorized_reduce_equals_the_padded_shifted_definition(side, layout):
    torch.manual_seed(0)
    op = FactorizedReduce(4, 6, 2).double().train()
    x = torch.randn(2, 4, side, side, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_()
    relu = F.relu(x)
    shifted = F.pad(relu, (0, 1, 0, 1))[:, :, 1:, 1:]
    expected = op.bn(torch.cat([op.convs[0](relu), op.convs[1](shifted)], dim=1))
    out = op(x)
    torch.testing.assert_close(out, expected)
    probe = torch.randn_like(out)
    grads = torch.autograd.grad((out * probe).sum(), [x, *op.parameters()])
    expected_grads = torch.autograd.grad((expected * probe).sum(), [x, *op.parameters()])
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)


def test_factorized_reduce_backward_survives_the_channels_last_shape_that_crashes_pytorch():
    """PyTorch 2.14's CPU backward of a stride-2 1x1 conv in channels-last corrupts memory for 3-12 input channels
    on 56x56 or 112x112 maps (a segfault or 'double free' here, AMD EPYC with AVX-512); FactorizedReduce avoids
    that kernel. Run in a child so that a regression fails this test instead of killing pytest."""
    code = ("import torch\n"
            "from xautodl.spaces.ops import FactorizedReduce\n"
            "op = FactorizedReduce(8, 8, 2).to(memory_format=torch.channels_last)\n"
            "for _ in range(30):\n"
            "    x = torch.randn(2, 8, 56, 56).contiguous(memory_format=torch.channels_last).requires_grad_()\n"
            "    op(x).sum().backward()\n"
            "print('survived')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0 and "survived" in result.stdout, result.stderr[-2000:]


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


RELU_FIRST = [("nor_conv_3x3", 1), ("nor_conv_1x1", 2), ("sep_conv_3x3", 1), ("sep_conv_5x5", 2),
              ("dil_conv_3x3", 1), ("dil_conv_5x5", 2), ("conv_3x1_1x3", 1), ("skip_connect", 2)]


@pytest.mark.parametrize("name,stride", RELU_FIRST)
def test_ops_that_start_with_a_relu_equal_their_forward_given_the_relu(name, stride):
    torch.manual_seed(0)
    op = build_op(name, 4, 4, stride).double().eval()
    assert hasattr(op, "after_relu") and isinstance(op.activation, nn.ReLU)
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    assert torch.equal(op.after_relu(F.relu(x)), op(x))


def _count_aten(fn, name: str) -> int:
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Counter.count += str(func.overloadpacket) == name
            return func(*args, **(kwargs or {}))

    with Counter():
        fn()
    return Counter.count


def test_darts_cell_computes_one_relu_per_node_input_with_the_same_value_and_gradient():
    torch.manual_seed(0)
    cell = SearchCell(4, 4, NB201_OPS, affine=False, track_running_stats=False).double()
    logits = torch.randn(6, len(NB201_OPS), dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    # Every node but the last is read by two conv ops on each of its outgoing edges: 12 ReLUs unshared, 3 shared.
    assert _count_aten(lambda: cell(x, SoftmaxMixer()(logits, NB201_OPS)), "aten.relu") == 3
    out = cell(x, SoftmaxMixer()(logits, NB201_OPS))
    w = F.softmax(logits, dim=-1)
    nodes = [x]
    for inputs in cell.node_edges:  # the textbook sum: every op on its own input, none included
        nodes.append(sum(w[e, k] * op(nodes[source]) for e, source in inputs for k, op in enumerate(cell.edges[e])))
    torch.testing.assert_close(out, nodes[-1])
    upstream = torch.randn_like(out)
    got = torch.autograd.grad(out, [logits, x, *cell.parameters()], upstream)
    want = torch.autograd.grad(nodes[-1], [logits, x, *cell.parameters()], upstream)
    for g, expected in zip(got, want):
        torch.testing.assert_close(g, expected)


def test_gdas_node_without_gradient_uses_host_weights_and_equals_the_differentiable_node():
    torch.manual_seed(2)
    cell = SearchCell(4, 4, NB201_OPS, affine=False, track_running_stats=False).double()
    logits = torch.randn(6, len(NB201_OPS), dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    for seed in range(5):
        differentiable = GumbelHardMixer(tau=5.0, seed=seed)(logits, NB201_OPS)
        frozen = GumbelHardMixer(tau=5.0, seed=seed)(logits.detach(), NB201_OPS)
        assert frozen.active == differentiable.active and not frozen.differentiable
        assert frozen.host_weights == differentiable.weights.detach().gather(
            -1, torch.tensor(frozen.active)).tolist()
        assert torch.equal(cell(x, frozen), cell(x, differentiable))
    # Without a gradient to carry, the straight-through offsets cost no kernel, nor does a weight of exactly 1.0:
    # the only multiplications left are the average pools' own and those by weights that differ from 1.0.
    sample = GumbelHardMixer(tau=5.0, seed=0)(logits.detach(), NB201_OPS)
    pools = sum(NB201_OPS[k] == "avg_pool_3x3" for (k,) in sample.active)
    scaled = sum(w != 1.0 and NB201_OPS[k] != "none" for (k,), (w,) in zip(sample.active, sample.host_weights))
    assert pools > 0 and scaled < 6
    assert _count_aten(lambda: cell(x, sample), "aten.mul") == pools + scaled
    assert _count_aten(lambda: cell(x, sample), "aten.addcmul") == 0
    assert _count_aten(lambda: cell(x, sample), "aten.sum") == 0
