"""The fast forms of ops must equal their textbook definitions (`reference_ops`): values and gradients, both memory
layouts."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reference_ops import depthwise_conv, own_relu
from xautodl.spaces.ops import DepthwiseConv2d, FactorizedReduce, NodeInput, build_op, from_phases, to_phases

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
    expected = depthwise_conv(conv, x)
    assert conv.padding == (dilation * (kernel - 1) // 2,) * 2 and conv.groups == 6
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


RELU_FIRST = [("nor_conv_3x3", 1), ("nor_conv_1x1", 2), ("sep_conv_3x3", 1), ("sep_conv_5x5", 2),
              ("dil_conv_3x3", 1), ("dil_conv_5x5", 2), ("conv_3x1_1x3", 1), ("skip_connect", 2)]


@pytest.mark.parametrize("name,stride", RELU_FIRST)
def test_ops_that_start_with_a_relu_equal_their_forward_given_the_nodes_shared_relu(name, stride):
    torch.manual_seed(0)
    op = build_op(name, 4, 4, stride).double().eval()
    assert op.reads_node_input and isinstance(op.activation, nn.ReLU)
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    node = NodeInput(x)
    assert torch.equal(node.apply(op), op(x))
    assert list(node._activated) == [nn.ReLU]  # the ReLU was computed by the node, once
    assert torch.equal(node.apply(op), own_relu(op, x))  # the textbook form: its layers in order on the tensor


