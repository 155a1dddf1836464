"""A NASNet search cell computes its textbook definition: values and gradients, both mixers, both memory layouts.

The fast cell (`NASNetSearchCell.forward` with the samples' `node`) shares one ReLU per node input, skips `none`,
computes only the sampled op under GDAS, uses host float weights without a gradient and adds the value-zero
weights of unsampled ops as one scalar per node. The textbook form below has none of that: it preprocesses both
inputs, computes every edge by the formulas of `reference_mixing` (every op module of an edge called on its own,
each with its own ReLU, weighted by the edge's mixing weight), sums a node's edges and concatenates the last
`multiplier` nodes. It runs on a deep copy of the cell whose ops take their textbook forms (`reference_ops`; same
weights, fresh BatchNorm statistics, contiguous layout) so that neither side sees the other's BN updates.

Everything is float64 and compared with `torch.testing.assert_close` defaults for float64 (rtol 1e-7, atol 1e-7).
The last test checks that a channels-last cell's output stays channels-last (also when a GDAS node sampled `none` on
every edge, whose zeros once came out contiguous).
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from reference_mixing import gumbel_edge, softmax_edge
from reference_ops import textbook_ops
from xautodl.search.algorithms import frozen
from xautodl.search.mixing import GumbelHardMixer, SoftmaxMixer
from xautodl.spaces.nasnet import DARTS_OPS, NASNetSearchCell, search_edges
from xautodl.spaces.ops import DualSepConv, FactorizedReduce, Pooling, ReLUConvBN, SepConv, Zero

LAYOUTS = [torch.contiguous_format, torch.channels_last]
STEPS, MULTIPLIER = 4, 4
C_PREV_PREV, C_PREV, C = 6, 5, 4
BATCH, SIDE = 2, 8
TAU = 10.0
# (reduction, reduction_prev): a normal cell, a normal cell after a reduction (preprocess0 is a FactorizedReduce
# of a twice larger s0) and a reduction cell after a reduction (stride-2 edges from both inputs, too).
CELLS = {"normal": (False, False), "normal_after_reduction": (False, True), "reduction": (True, True)}
# Edges into this node lean towards `none`, so that the GDAS sample can have a node whose every edge is `none` (the
# fast path's special case) while that node is still read by later nodes.
ALL_NONE_NODE = 3
PARAMETERISED = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")

pytestmark = pytest.mark.usefixtures("one_thread")




def _textbook_edges() -> list[tuple[int, int]]:
    """(node, input node) in alpha-row order, written out: step i makes node 2 + i from inputs 0 .. 1 + i."""
    edges = []
    for step in range(STEPS):
        for source in range(2 + step):
            edges.append((2 + step, source))
    return edges


def _alphas() -> torch.Tensor:
    generator = torch.Generator().manual_seed(11)
    alphas = torch.randn(len(_textbook_edges()), len(DARTS_OPS), generator=generator, dtype=torch.float64)
    none = DARTS_OPS.index("none")
    for e, (node, _) in enumerate(_textbook_edges()):
        if node == ALL_NONE_NODE:
            alphas[e, none] += 3.0
    return alphas.requires_grad_()


def _setup(kind: str, layout: torch.memory_format):
    """The fast cell (in `layout`), its textbook twin (a deep copy, contiguous), the inputs (in `layout`), alphas."""
    reduction, reduction_prev = CELLS[kind]
    torch.manual_seed(0)
    cell = NASNetSearchCell(C_PREV_PREV, C_PREV, C, reduction, reduction_prev, STEPS, MULTIPLIER).double().train()
    reference = textbook_ops(copy.deepcopy(cell))
    cell = cell.to(memory_format=layout)
    side0 = 2 * SIDE if reduction_prev else SIDE
    generator = torch.Generator().manual_seed(5)
    s0 = torch.randn(BATCH, C_PREV_PREV, side0, side0, generator=generator, dtype=torch.float64)
    s1 = torch.randn(BATCH, C_PREV, SIDE, SIDE, generator=generator, dtype=torch.float64)
    s0 = s0.contiguous(memory_format=layout).requires_grad_()
    s1 = s1.contiguous(memory_format=layout).requires_grad_()
    assert isinstance(cell.preprocess0, FactorizedReduce if reduction_prev else ReLUConvBN)
    if layout == torch.channels_last:  # the layout is real: inputs and conv weights are channels-last
        assert not s0.is_contiguous() and s0.is_contiguous(memory_format=layout)
        depthwise = cell.edges[0][DARTS_OPS.index("sep_conv_3x3")][0][1].weight  # (C, 1, 3, 3): both layouts
        assert depthwise.stride() == (9, 1, 3, 1)  # contiguous would be (9, 9, 3, 1)
    return cell, reference, s0, s1, _alphas()


def _textbook_cell(cell: NASNetSearchCell, s0: torch.Tensor, s1: torch.Tensor, edge_output) -> torch.Tensor:
    """preprocess both inputs; node 2 + i = sum over its inputs j of edge_output(e, ops of edge e, node j); concat."""
    nodes = [cell.preprocess0(s0.contiguous()), cell.preprocess1(s1.contiguous())]
    edges = _textbook_edges()
    for step in range(STEPS):
        terms = [edge_output(e, cell.edges[e], nodes[source]) for e, (node, source) in enumerate(edges)
                 if node == 2 + step]
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        nodes.append(total)
    return torch.cat(nodes[-cell.multiplier:], dim=1)


def _assert_cell_matches(cell, reference, s0, s1, out, expected, alphas=None):
    """Same values, the same gradients (inputs, alphas, every parameter) for a random upstream gradient, and the
    same BatchNorm running statistics afterwards. A gradient missing on one side must be missing or zero on the
    other. Returns the fast side's gradients by name."""
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected)
    names = [name for name, _ in cell.named_parameters()]
    assert names == [name for name, _ in reference.named_parameters()]
    leaves = [s0, s1] + ([alphas] if alphas is not None else [])
    labels = ["s0", "s1"] + (["alphas"] if alphas is not None else []) + names
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype)
    got = torch.autograd.grad(out, leaves + list(cell.parameters()), probe, allow_unused=True, retain_graph=True)
    want = torch.autograd.grad(expected, leaves + list(reference.parameters()), probe, allow_unused=True)
    for label, g, w in zip(labels, got, want):
        if g is None or w is None:
            present = w if g is None else g
            assert present is None or not present.any(), f"{label}: a gradient on one side only"
        else:
            torch.testing.assert_close(g, w, msg=lambda m, label=label: f"gradient of {label}: {m}")
    buffers = dict(reference.named_buffers())
    for name, buffer in cell.named_buffers():
        torch.testing.assert_close(buffer, buffers[name], msg=lambda m, name=name: f"buffer {name}: {m}")
    grads = dict(zip(labels, got))
    assert grads["s0"].abs().sum() > 0 and grads["s1"].abs().sum() > 0
    return grads


def _parameter_owners(cell) -> dict[str, tuple[int, int] | None]:
    """For each parameter name, the (edge, op index) it belongs to, or None for the preprocessing."""
    owners = {}
    for name, _ in cell.named_parameters():
        parts = name.split(".")
        owners[name] = (int(parts[1]), int(parts[2])) if parts[0] == "edges" else None
    return owners


def test_the_cell_edges_are_the_textbook_edges():
    assert search_edges(STEPS) == _textbook_edges()
    assert len(_textbook_edges()) == 14
    cell = NASNetSearchCell(C_PREV_PREV, C_PREV, C, True, True, STEPS, MULTIPLIER)
    for (node, source), ops in zip(_textbook_edges(), cell.edges):
        assert [type(op) for op in ops] == [Zero, FactorizedReduce if source < 2 else torch.nn.Identity,
                                            DualSepConv, DualSepConv, SepConv, SepConv, Pooling, Pooling]


@pytest.mark.parametrize("layout", LAYOUTS, ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("frozen_alphas", [False, True], ids=["alpha_step", "weight_step"])
def test_darts_cell_equals_the_softmax_sum_of_every_op(kind, layout, frozen_alphas):
    cell, reference, s0, s1, alphas = _setup(kind, layout)
    if frozen_alphas:
        with frozen([alphas]):
            out = cell(s0, s1, SoftmaxMixer()(alphas, DARTS_OPS))
            expected = _textbook_cell(reference, s0, s1, softmax_edge(alphas))
        assert alphas.requires_grad
        grads = _assert_cell_matches(cell, reference, s0, s1, out, expected)
    else:
        out = cell(s0, s1, SoftmaxMixer()(alphas, DARTS_OPS))
        expected = _textbook_cell(reference, s0, s1, softmax_edge(alphas))
        grads = _assert_cell_matches(cell, reference, s0, s1, out, expected, alphas)
        assert (grads["alphas"].abs().sum(dim=1) > 0).all()
    # Every op is computed: every parameter has a gradient.
    assert all(grads[name] is not None and grads[name].abs().sum() > 0 for name, _ in cell.named_parameters())
    side = SIDE // 2 if CELLS[kind][0] else SIDE
    assert out.shape == (BATCH, MULTIPLIER * C, side, side)


def _covering_seed(alphas: torch.Tensor) -> int:
    """The first mixer seed whose sample has a node with only `none` edges, and elsewhere at least 4 distinct ops,
    a parameterised op, a pooling op, and a skip connection."""
    for seed in range(200):
        sample = GumbelHardMixer(tau=TAU, seed=seed)(alphas.detach(), DARTS_OPS)
        names = [DARTS_OPS[k] for k in sample.chosen_ops]
        node_names = [name for name, (node, _) in zip(names, _textbook_edges()) if node == ALL_NONE_NODE]
        others = [name for name, (node, _) in zip(names, _textbook_edges()) if node != ALL_NONE_NODE]
        if (all(name == "none" for name in node_names) and len(set(others)) >= 4
                and any(name in PARAMETERISED for name in others) and "skip_connect" in others
                and any(name.endswith("pool_3x3") for name in others)):
            return seed
    raise AssertionError("no seed below 200 gives a covering GDAS sample")


def _check_gdas_sample(sample, unsampled_gradient: bool) -> list[int]:
    """The sample's chosen ops, checked for coverage and consistency with its weights."""
    chosen = sample.chosen_ops
    assert len(chosen) == len(sample.weights)
    assert sample.chosen.tolist() == chosen
    assert sample.unsampled_gradient == unsampled_gradient
    names = [DARTS_OPS[k] for k in chosen]
    edges = _textbook_edges()
    assert all(name == "none" for name, (node, _) in zip(names, edges) if node == ALL_NONE_NODE)
    assert "none" in names and len(set(names)) >= 5, names
    assert any(name in PARAMETERISED for name in names) and "skip_connect" in names, names
    one_hot = F.one_hot(torch.tensor(chosen), len(DARTS_OPS)).double()
    torch.testing.assert_close(sample.weights.detach(), one_hot, rtol=0, atol=1e-12)  # one-hot in value
    return chosen


@pytest.mark.parametrize("layout", LAYOUTS, ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("unsampled_gradient", [False, True], ids=["nasnet_rule", "nb201_rule"])
def test_gdas_cell_equals_the_straight_through_sample(kind, layout, unsampled_gradient):
    cell, reference, s0, s1, alphas = _setup(kind, layout)
    seed = _covering_seed(alphas)
    sample = GumbelHardMixer(tau=TAU, seed=seed)(alphas, DARTS_OPS, unsampled_gradient=unsampled_gradient)
    assert sample.differentiable
    chosen = _check_gdas_sample(sample, unsampled_gradient)
    out = cell(s0, s1, sample)
    expected = _textbook_cell(reference, s0, s1, gumbel_edge(sample.weights, chosen, unsampled_gradient))
    grads = _assert_cell_matches(cell, reference, s0, s1, out, expected, alphas)
    # Only the sampled ops (and the preprocessing) are computed: exactly their parameters have gradients.
    for name, owner in _parameter_owners(cell).items():
        sampled = owner is None or chosen[owner[0]] == owner[1]
        assert (grads[name] is not None) == sampled, name
    # Under the NASNet rule an edge's alphas get a gradient only through its chosen op's output: none if it sampled
    # `none` or reads the all-`none` node (whose zeros every op maps to zeros); the NAS-Bench-201 rule gives every
    # edge's alphas a gradient.
    row_has_gradient = grads["alphas"].abs().sum(dim=1) > 0
    nonzero_output = torch.tensor([DARTS_OPS[k] != "none" and source != ALL_NONE_NODE
                                   for k, (_, source) in zip(chosen, _textbook_edges())])
    assert not nonzero_output.all()
    assert torch.equal(row_has_gradient, torch.ones_like(nonzero_output) if unsampled_gradient else nonzero_output)


@pytest.mark.parametrize("layout", LAYOUTS, ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("kind", list(CELLS))
def test_gdas_weight_step_with_frozen_alphas_uses_host_weights_and_equals_the_textbook(kind, layout):
    cell, reference, s0, s1, alphas = _setup(kind, layout)
    seed = _covering_seed(alphas)
    differentiable = GumbelHardMixer(tau=TAU, seed=seed)(alphas, DARTS_OPS)
    with frozen([alphas]):
        sample = GumbelHardMixer(tau=TAU, seed=seed)(alphas, DARTS_OPS)
        assert not sample.differentiable and sample.chosen_values is not None
        assert sample.chosen_ops == differentiable.chosen_ops  # the weight step sees the sample the alpha step would
        chosen = _check_gdas_sample(sample, True)
        assert sample.chosen_values == [sample.weights[e, k].item() for e, k in enumerate(chosen)]
        out = cell(s0, s1, sample)
        expected = _textbook_cell(reference, s0, s1, gumbel_edge(sample.weights, chosen, False))
    assert alphas.requires_grad
    grads = _assert_cell_matches(cell, reference, s0, s1, out, expected)
    for name, owner in _parameter_owners(cell).items():
        sampled = owner is None or chosen[owner[0]] == owner[1]
        assert (grads[name] is not None) == sampled, name


@pytest.mark.parametrize("mixer", ["darts", "gdas_all_none_node"])
def test_channels_last_cell_output_stays_channels_last(mixer):
    cell, _, s0, s1, alphas = _setup("normal", torch.channels_last)
    if mixer == "darts":
        sample = SoftmaxMixer()(alphas, DARTS_OPS)
    else:
        sample = GumbelHardMixer(tau=TAU, seed=_covering_seed(alphas))(alphas, DARTS_OPS)
        _check_gdas_sample(sample, True)
    assert cell(s0, s1, sample).is_contiguous(memory_format=torch.channels_last)
