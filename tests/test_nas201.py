"""NAS-Bench-201 space: arch strings, TinyNetwork and the search supernet."""
from __future__ import annotations

import pytest
import torch

from conftest import RecordingMixer, tiny_supernet
from xautodl.errors import ArchError
from xautodl.search.mixing import GumbelHardMixer, SoftmaxMixer
from xautodl.spaces import nas201
from xautodl.spaces.nas201 import (
    Arch,
    ResNetBlock,
    SearchCell,
    TinyNetwork,
    build_inference_net,
    edge_list,
    enumerate_archs,
    parse_arch,
)
from xautodl.spaces.ops import NB201_OPS

BEST_C10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
GRAMMAR = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"


def test_every_arch_string_round_trips():
    archs = enumerate_archs()
    strings = [str(arch) for arch in archs]
    assert len(archs) == 15_625
    assert len(set(strings)) == 15_625
    assert all(parse_arch(text) == arch for text, arch in zip(strings, archs))
    assert archs[0] == parse_arch("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert archs[-1] == parse_arch("|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|"
                                   "+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|")
    assert [str(arch) for arch in enumerate_archs()] == strings


def test_arch_value_semantics_and_dict_form():
    arch = parse_arch(BEST_C10)
    shuffled = Arch(tuple(tuple(reversed(edges)) for edges in arch.nodes))
    assert shuffled == arch and hash(shuffled) == hash(arch) and str(shuffled) == BEST_C10
    assert arch.to_dict() == {"space": "nas-bench-201", "arch": BEST_C10}
    assert Arch.from_dict(arch.to_dict()) == arch
    assert arch.edge_ops() == ("nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_3x3",
                               "nor_conv_3x3")
    assert Arch.from_edge_ops(arch.edge_ops()) == arch
    assert len({arch, parse_arch(BEST_C10), parse_arch(RESNET)}) == 2
    with pytest.raises(AttributeError):
        arch.nodes = ()


def test_known_names_and_whitespace():
    assert str(parse_arch("resnet")) == RESNET
    assert str(parse_arch("  ResNet\n")) == RESNET
    assert str(parse_arch(f"\t{BEST_C10}  ")) == BEST_C10


def test_space_interface():
    arch = nas201.parse(RESNET)
    assert nas201.validate(RESNET) == arch
    assert nas201.validate(arch) is arch
    assert nas201.validate(arch.to_dict()) == arch
    with pytest.raises(ArchError, match="nas-bench-201"):
        nas201.validate({"space": "darts", "arch": RESNET})
    with pytest.raises(ArchError, match="genotype"):
        nas201.validate(42)
    net = build_inference_net("resnet", C=4, N=1, num_classes=3)
    assert isinstance(net, TinyNetwork) and net.arch == arch


@pytest.mark.parametrize("text, node, problem", [
    ("|conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", 1, "unknown op 'conv_3x3'"),
    ("|none~0|+|none~0|none~2|+|none~0|none~1|none~2|", 2, "input 2 of 'none~2' must be below the node index 2"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", 2, "no edge from node(s) [1]"),
    ("|none~0|+|none~0|none~1|+|none~0|none~0|none~2|", 3, "more than one edge from node(s) [0]"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|none~2|", 3, "more than one edge from node(s) [2]"),
    ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", 1, "group 'none~0|' must start and end with '|'"),
    ("|none~0|+|none~0||none~1|+|none~0|none~1|none~2|", 2, "entry '' is not of the form 'op~input'"),
    ("|none~0|+|none~0|none-1|+|none~0|none~1|none~2|", 2, "entry 'none-1' is not of the form 'op~input'"),
    ("|none~0|+|none~0|none~x|+|none~0|none~1|none~2|", 2, "input 'x' of entry 'none~x' is not a node number"),
    ("|none~0|++|none~0|none~1|none~2|", 2, "group '' must start and end with '|'"),
])
def test_parse_errors_name_the_node_the_grammar_and_the_ops(text, node, problem):
    with pytest.raises(ArchError) as info:
        parse_arch(text)
    message = str(info.value)
    assert f"node {node}: {problem}" in message
    assert GRAMMAR in message
    assert ", ".join(NB201_OPS) in message


@pytest.mark.parametrize("text, problem", [
    ("|none~0|+|none~0|none~1|", "2 node group(s), expected 3"),
    (RESNET + "+|none~0|none~1|none~2|none~3|", "4 node group(s), expected 3"),
    ("", "empty arch string"),
    ("   ", "empty arch string"),
    ("|none~0|,|none~0|none~1|,|none~0|none~1|none~2|", "1 node group(s), expected 3"),
])
def test_parse_errors_on_the_whole_string(text, problem):
    with pytest.raises(ArchError, match="valid ops: none, skip_connect") as info:
        parse_arch(text)
    assert problem in str(info.value)


def test_parse_rejects_non_strings_and_invalid_direct_construction():
    with pytest.raises(ArchError, match="string"):
        parse_arch(None)
    with pytest.raises(ArchError, match="node 2: no edge from node"):
        Arch(((("none", 0),), (("none", 0),)))
    with pytest.raises(ArchError, match="edges"):
        Arch.from_edge_ops(["none"] * 5)


@pytest.mark.parametrize("side, num_classes", [(32, 10), (16, 120)])
def test_tiny_network_shapes(side, num_classes):
    torch.manual_seed(0)
    net = TinyNetwork(BEST_C10, C=8, N=1, num_classes=num_classes)
    out = net(torch.randn(2, 3, side, side))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()


def test_tiny_network_macro_layout():
    net = TinyNetwork(RESNET, C=4, N=2, num_classes=10)
    kinds = [type(layer).__name__ for layer in net.cells]
    assert kinds == ["InferCell"] * 2 + ["ResNetBlock"] + ["InferCell"] * 2 + ["ResNetBlock"] + ["InferCell"] * 2
    assert net.stem[0].out_channels == 4 and net.classifier.in_features == 16
    # none edges are not built: resnet's cell has two convs and two skips.
    assert len(net.cells[0].ops) == 4


def test_infer_cell_sums_incoming_edges_and_skips_none():
    net = TinyNetwork("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|none~0|none~1|skip_connect~2|",
                      C=4, N=1, num_classes=2)
    x = torch.randn(2, 4, 8, 8)
    # node1 = x, node2 = x + node1, node3 = node2.
    assert torch.allclose(net.cells[0](x), 2 * x)
    all_none = TinyNetwork("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", C=4, N=1, num_classes=2)
    assert torch.equal(all_none.cells[0](x), torch.zeros_like(x))
    assert len(all_none.cells[0].ops) == 0


def test_resnet_block_shortcut():
    block = ResNetBlock(4, 8, 2)
    assert block(torch.randn(2, 4, 8, 8)).shape == (2, 8, 4, 4)
    assert isinstance(block.shortcut[0], torch.nn.AvgPool2d) and block.shortcut[1].kernel_size == (1, 1)
    assert isinstance(ResNetBlock(4, 4, 1).shortcut, torch.nn.Identity)


def test_supernet_parameter_groups():
    model = tiny_supernet(SoftmaxMixer())
    alphas, weights = model.alphas(), model.weights()
    assert len(alphas) == 1 and alphas[0].shape == (6, 5)
    assert 0 < alphas[0].detach().abs().max() < 0.01
    alpha_ids, weight_ids = {id(p) for p in alphas}, {id(p) for p in weights}
    assert not alpha_ids & weight_ids
    assert alpha_ids | weight_ids == {id(p) for p in model.parameters()}


def test_supernet_bn_settings():
    model = tiny_supernet(SoftmaxMixer(), affine=False, track_running_stats=False)
    search_bns = [m for cell in model.cells if isinstance(cell, SearchCell)
                  for m in cell.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert search_bns and all(not bn.affine and not bn.track_running_stats for bn in search_bns)
    assert model.stem[1].affine
    block_bns = [m for cell in model.cells if isinstance(cell, ResNetBlock)
                 for m in cell.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert block_bns and all(bn.affine and bn.track_running_stats for bn in block_bns)


def test_supernet_genotype_is_the_argmax_of_each_edge():
    model = tiny_supernet(SoftmaxMixer())
    wanted = ["nor_conv_3x3", "none", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3"]
    with torch.no_grad():
        model.arch_parameters.zero_()
        for edge, op in enumerate(wanted):
            model.arch_parameters[edge, NB201_OPS.index(op)] = 1.0
    assert model.genotype() == Arch.from_edge_ops(wanted)
    assert str(model.genotype()) == ("|nor_conv_3x3~0|+|none~0|skip_connect~1|"
                                     "+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|")
    table = model.alpha_table()
    assert list(table) == [f"{node}<-{source}" for node, source in edge_list()]
    assert all(abs(sum(row) - 1) < 1e-6 for row in table.values())
    assert table["1<-0"].index(max(table["1<-0"])) == NB201_OPS.index("nor_conv_3x3")


@pytest.mark.parametrize("mixer", [SoftmaxMixer(), GumbelHardMixer(tau=5.0, seed=1)], ids=["softmax", "gumbel"])
def test_supernet_forward_and_alpha_gradients(mixer):
    model = tiny_supernet(mixer)
    x, y = torch.randn(3, 3, 8, 8), torch.tensor([0, 1, 2])
    # A single hard sample can cut the input off (e.g. `none` into every node: the logits are then constant and the
    # alphas rightly get no gradient), so accumulate over a few samples.
    for _ in range(3 if isinstance(mixer, GumbelHardMixer) else 1):
        logits = model(x)
        assert logits.shape == (3, 5)
        torch.nn.functional.cross_entropy(logits, y).backward()
    grad = model.arch_parameters.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    model.set_tau(0.5)
    assert mixer.tau == 0.5


def test_supernet_samples_once_per_forward():
    mixer = RecordingMixer(SoftmaxMixer())
    model = tiny_supernet(mixer)
    model(torch.randn(2, 3, 8, 8))
    assert len(mixer.calls) == 1 and mixer.calls[0] is model.arch_parameters


def test_supernet_rejects_ops_outside_the_space():
    with pytest.raises(ArchError, match="subset"):
        tiny_supernet(SoftmaxMixer(), ops=("none", "sep_conv_3x3"))
    model = tiny_supernet(SoftmaxMixer(), ops=("skip_connect", "nor_conv_3x3"))
    assert model.arch_parameters.shape == (6, 2)
    assert set(model.genotype().edge_ops()) <= {"skip_connect", "nor_conv_3x3"}
