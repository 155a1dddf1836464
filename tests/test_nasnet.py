"""NASNet (DARTS) space: op shapes, cells, the search supernet, genotype derivation, evaluation nets and sizes."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import RecordingMixer

from xautodl.errors import ArchError
from xautodl.search.mixing import GumbelHardMixer, SoftmaxMixer
from xautodl.spaces.genotypes import NASNetGenotype, get_genotype
from xautodl.spaces.nasnet import (DARTS_OPS, FixedReductionCell, NASNetCIFAR, NASNetImageNet, NASNetInferCell,
                                   NASNetSearchCell, NASNetSupernet, build_inference_net, drop_path, search_edges)
from xautodl.spaces.ops import OPS, ChannelProjection, FactorizedReduce
from xautodl.utils.flops import count_flops_m, count_params_mb

OP_INDEX = {name: k for k, name in enumerate(DARTS_OPS)}

pytestmark = pytest.mark.usefixtures("one_thread")




@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("C_in, C_out", [(4, 4), (4, 6)])
@pytest.mark.parametrize("side", [8, 7])
def test_every_op_maps_channels_and_resolution(name, stride, C_in, C_out, side):
    op = OPS[name](C_in, C_out, stride, True, True)
    out = op(torch.randn(2, C_in, side, side))
    expected_side = -(-side // stride)
    assert out.shape == (2, C_out, expected_side, expected_side)


def test_skip_connect_is_identity_or_factorized_reduce():
    assert isinstance(OPS["skip_connect"](4, 4, 1, True, True), nn.Identity)
    assert isinstance(OPS["skip_connect"](4, 4, 2, True, True), FactorizedReduce)
    projection = OPS["skip_connect"](4, 6, 1, True, True)
    assert isinstance(projection, ChannelProjection)  # the original's stride-1 FactorizedReduce: no ReLU
    assert not any(isinstance(m, nn.ReLU) for m in projection.modules())


@pytest.mark.parametrize("reduction_prev", [False, True])
def test_fixed_reduction_cell_gives_4C_channels_at_half_resolution(reduction_prev):
    cell = FixedReductionCell(12, 20, 8, reduction_prev=reduction_prev)
    s0 = torch.randn(2, 12, 16 if reduction_prev else 8, 16 if reduction_prev else 8)
    out = cell(s0, torch.randn(2, 20, 8, 8))
    assert out.shape == (2, 32, 4, 4)
    assert cell.out_channels == 32
    grouped = [m for m in cell.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(grouped) == 4 and all(m.groups == 8 for m in grouped)


def test_fixed_reduction_cell_rejects_channels_not_divisible_by_groups():
    with pytest.raises(ArchError, match="multiple of 8"):
        FixedReductionCell(12, 12, 12)


@pytest.mark.parametrize("reduction, side", [(False, 8), (True, 4)])
def test_search_cell_has_14_edges_and_concatenates_4_nodes(reduction, side):
    cell = NASNetSearchCell(12, 10, 4, reduction=reduction, reduction_prev=False)
    assert len(cell.edges) == 14 and all(len(edge) == len(DARTS_OPS) for edge in cell.edges)
    sample = SoftmaxMixer()(torch.zeros(14, len(DARTS_OPS)), DARTS_OPS)
    out = cell(torch.randn(2, 12, 8, 8), torch.randn(2, 10, 8, 8), sample)
    assert out.shape == (2, 16, side, side)


def test_search_cell_strides_only_edges_from_cell_inputs_in_reduction_cells():
    cell = NASNetSearchCell(4, 4, 4, reduction=True, reduction_prev=False)
    for (node, source), edge in zip(search_edges(4), cell.edges):
        pool = edge[OP_INDEX["max_pool_3x3"]].pool
        assert pool.stride == (2 if source < 2 else 1), (node, source)


def _supernet(mixer, fixed_reduction=False, **kwargs):
    torch.manual_seed(0)
    return NASNetSupernet(8, 2, 4, 4, 3, 10, mixer, fixed_reduction=fixed_reduction, **kwargs)


@pytest.mark.parametrize("make_mixer", [SoftmaxMixer, lambda: GumbelHardMixer(tau=10.0, seed=3)])
@pytest.mark.parametrize("fixed_reduction", [False, True])
def test_supernet_forward_samples_once_per_cell_kind_and_gives_alpha_gradients(make_mixer, fixed_reduction):
    mixer = RecordingMixer(make_mixer())
    net = _supernet(mixer, fixed_reduction, unsampled_gradient=True)
    assert len(net.cells) == 6
    assert [isinstance(c, FixedReductionCell) for c in net.cells] == [False, False, fixed_reduction, False,
                                                                       fixed_reduction, False]
    logits = net(torch.randn(2, 3, 16, 16))
    assert logits.shape == (2, 10)
    expected_calls = [net.alpha_normal] if fixed_reduction else [net.alpha_normal, net.alpha_reduce]
    assert [a is b for a, b in zip(mixer.calls, expected_calls)] == [True] * len(expected_calls)
    assert len(mixer.calls) == len(expected_calls)
    logits.square().mean().backward()
    for alphas in net.alphas():
        assert alphas.shape == (14, 8)
        assert (alphas.grad.abs().sum(dim=1) > 0).all()


@pytest.mark.parametrize("unsampled_gradient", [False, True])
def test_gdas_alpha_gradient_flows_through_the_chosen_weight_unless_asked_for_all(unsampled_gradient):
    """The original's NASNet cell (the default) outputs h[chosen] * op(x): an edge that sampled `none` gives its
    alphas no gradient. With `unsampled_gradient` every edge's alphas get one, as in the NAS-Bench-201 cell."""
    mixer = RecordingMixer(GumbelHardMixer(tau=10.0, seed=3))
    net = _supernet(mixer, unsampled_gradient=unsampled_gradient)
    net(torch.randn(2, 3, 16, 16)).square().mean().backward()
    for alphas, sample in zip(net.alphas(), mixer.samples):
        sampled_none = torch.tensor([net.op_names[k] == "none" for k in sample.chosen_ops])
        assert sampled_none.any(), "seed 3 is meant to sample `none` on some edge"
        has_gradient = alphas.grad.abs().sum(dim=1) > 0
        assert torch.equal(has_gradient, torch.ones_like(has_gradient) if unsampled_gradient else ~sampled_none)


def test_supernet_parameter_groups_are_disjoint_and_complete():
    for fixed_reduction in (False, True):
        net = _supernet(SoftmaxMixer(), fixed_reduction)
        alpha_ids = {id(p) for p in net.alphas()}
        weight_ids = {id(p) for p in net.weights()}
        assert not alpha_ids & weight_ids
        assert alpha_ids | weight_ids == {id(p) for p in net.parameters()}
        assert len(alpha_ids) == (1 if fixed_reduction else 2)
        assert (net.alpha_reduce is None) == fixed_reduction


def test_supernet_search_cells_use_requested_bn_settings():
    net = _supernet(SoftmaxMixer(), affine=False, track_running_stats=False)
    cell_bns = [m for m in net.cells[0].modules() if isinstance(m, nn.BatchNorm2d)]
    assert cell_bns and all(not bn.affine and not bn.track_running_stats for bn in cell_bns)
    assert net.stem[1].affine


def test_set_tau_reaches_the_mixer():
    mixer = GumbelHardMixer(tau=10.0)
    _supernet(mixer).set_tau(0.5)
    assert mixer.tau == 0.5


def _alphas(entries: dict[tuple[int, int], dict[str, float]]) -> torch.Tensor:
    """14 x 8 logits, zero except the given {(node, input): {op: logit}}."""
    alphas = torch.zeros(14, len(DARTS_OPS))
    edge_index = {edge: e for e, edge in enumerate(search_edges(4))}
    for edge, ops in entries.items():
        for op, value in ops.items():
            alphas[edge_index[edge], OP_INDEX[op]] = value
    return alphas


def test_genotype_keeps_two_distinct_inputs_per_step_and_never_none():
    net = _supernet(SoftmaxMixer())
    normal = _alphas({
        (2, 0): {"sep_conv_3x3": 3.0}, (2, 1): {"skip_connect": 2.0},
        # Input 0 holds the two best (op, input) pairs; the published rule still takes a second input (2).
        (3, 0): {"sep_conv_3x3": 5.0, "dil_conv_3x3": 4.9}, (3, 1): {"none": 10.0}, (3, 2): {"max_pool_3x3": 1.5},
        # Step 2 all equal: best op and inputs fall back to the first ones.
        (5, 4): {"avg_pool_3x3": 3.0}, (5, 3): {"dil_conv_5x5": 2.0},
    })
    reduce = _alphas({(2, 0): {"none": 20.0}, (2, 1): {"none": 20.0, "max_pool_3x3": 1.0}})
    with torch.no_grad():
        net.alpha_normal.copy_(normal)
        net.alpha_reduce.copy_(reduce)
    genotype = net.genotype()
    assert genotype.normal == (
        (("sep_conv_3x3", 0), ("skip_connect", 1)),
        (("sep_conv_3x3", 0), ("max_pool_3x3", 2)),
        (("skip_connect", 0), ("skip_connect", 1)),
        (("avg_pool_3x3", 4), ("dil_conv_5x5", 3)),
    )
    assert genotype.normal_concat == (2, 3, 4, 5)
    assert genotype.reduce[0] == (("max_pool_3x3", 1), ("skip_connect", 0))
    assert all(op != "none" for cell in (genotype.normal, genotype.reduce) for step in cell for op, _ in step)


def test_fixed_reduction_supernet_genotype_has_no_reduction_cell():
    genotype = _supernet(SoftmaxMixer(), fixed_reduction=True).genotype()
    assert genotype.reduce is None and genotype.fixed_reduction
    assert "fixed" in str(genotype).splitlines()[1]


def test_alpha_table_has_softmax_rows_per_cell_kind():
    table = _supernet(SoftmaxMixer()).alpha_table()
    assert len(table) == 28 and "normal:2<-0" in table and "reduce:5<-4" in table
    assert all(len(row) == 8 and abs(sum(row) - 1) < 1e-6 for row in table.values())
    assert len(_supernet(SoftmaxMixer(), fixed_reduction=True).alpha_table()) == 14


def test_drop_path_drops_whole_samples_and_rescales():
    torch.manual_seed(0)
    out = drop_path(torch.ones(4000, 2, 3, 3), 0.25)
    per_sample = out.flatten(1)
    assert per_sample.unique().tolist() == [0.0, pytest.approx(1 / 0.75)]
    assert (per_sample.min(dim=1).values == per_sample.max(dim=1).values).all()
    assert abs((per_sample[:, 0] > 0).float().mean().item() - 0.75) < 0.03


def test_infer_cell_applies_drop_path_to_non_identity_ops_only():
    skips = NASNetGenotype([[("skip_connect", 0), ("skip_connect", 1)]] * 2, [2, 3])
    cell = NASNetInferCell(skips.normal_cell, 4, 4, 4, reduction=False, reduction_prev=False).train()
    s0, s1 = torch.randn(8, 4, 5, 5), torch.randn(8, 4, 5, 5)
    torch.manual_seed(1)
    first = cell(s0, s1, drop_prob=0.9)
    assert torch.equal(first, cell(s0, s1, drop_prob=0.9))  # only identity ops: nothing dropped
    convs = NASNetGenotype([[("sep_conv_3x3", 0), ("sep_conv_3x3", 1)]], [2]).normal_cell
    cell = NASNetInferCell(convs, 4, 4, 4, reduction=False, reduction_prev=False).train()
    out = cell(s0, s1, drop_prob=0.9)
    assert (out.flatten(1).abs().sum(dim=1) == 0).any()  # some samples lost both edges


@pytest.mark.parametrize("name", ["GDAS_V1", "DARTS_V2", "SETN", "NASNet", "PNASNet"])
def test_cifar_net_shapes_in_train_and_eval_mode(name):
    net = NASNetCIFAR(get_genotype(name), C=8, N=1, num_classes=7)
    assert len(net.cells) == 5 and net.auxiliary_index == 3
    net.drop_path_prob = 0.2
    logits, aux_logits = net.train()(torch.randn(2, 3, 32, 32))
    assert logits.shape == aux_logits.shape == (2, 7)
    (logits.sum() + aux_logits.sum()).backward()
    assert net.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_cifar_net_without_auxiliary_returns_logits_only():
    net = NASNetCIFAR("DARTS", C=8, N=1, auxiliary=False).train()
    assert net.auxiliary_head is None
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_eval_net_uses_fixed_reduction_cell_when_genotype_has_no_reduce():
    frc = NASNetGenotype(get_genotype("GDAS_V1").normal, (2, 3, 4, 5))
    net = NASNetCIFAR(frc, C=8, N=1)
    assert [type(c).__name__ for c in net.cells] == ["NASNetInferCell", "FixedReductionCell", "NASNetInferCell",
                                                     "FixedReductionCell", "NASNetInferCell"]
    logits, _ = net.train()(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)


def test_imagenet_net_shapes():
    net = NASNetImageNet(get_genotype("GDAS_V1"), C=8, N=1, num_classes=5)
    logits, aux_logits = net.train()(torch.randn(2, 3, 224, 224))
    assert logits.shape == aux_logits.shape == (2, 5)
    assert net.eval()(torch.randn(1, 3, 224, 224)).shape == (1, 5)


def test_build_inference_net_picks_the_dataset_defaults():
    net = build_inference_net("GDAS_V1", dataset="cifar100", C=8, N=1)
    assert isinstance(net, NASNetCIFAR) and net.classifier.out_features == 100
    net = build_inference_net(get_genotype("GDAS_V1").to_dict(), 8, 1, dataset="imagenet-1k", auxiliary=False)
    assert isinstance(net, NASNetImageNet) and net.classifier.out_features == 1000
    with pytest.raises(ArchError, match="ImageNet16-120"):
        build_inference_net("GDAS_V1", dataset="ImageNet16-120")


def test_published_gdas_cifar_size():
    net = NASNetCIFAR(get_genotype("GDAS_V1"), C=36, N=6, stem_multiplier=3, num_classes=10)
    params = count_params_mb(net, exclude_prefixes=("auxiliary",))
    assert abs(params - 3.4) <= 0.05
    assert count_params_mb(net, exclude_prefixes=()) - params > 0.4  # the auxiliary head is large and left out
    # DARTS paper: DARTS (second order) 3.3 M.
    assert abs(count_params_mb(NASNetCIFAR(get_genotype("DARTS_V2"))) - 3.3) <= 0.05


def test_published_gdas_imagenet_size_and_multiply_adds():
    net = NASNetImageNet(get_genotype("GDAS_V1"), C=50, N=4, num_classes=1000)
    assert count_params_mb(net, exclude_prefixes=("auxiliary",)) == pytest.approx(5.3, rel=0.01)
    assert count_flops_m(net, (1, 3, 224, 224), exclude_prefixes=("auxiliary",)) == pytest.approx(581, rel=0.01)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [8, 7])
def test_avg_pool_op_equals_torch_avg_pool_without_padded_positions(stride, size):
    from xautodl.spaces.ops import AvgPool3x3

    x = torch.randn(2, 3, size, size, requires_grad=True)
    ours = AvgPool3x3(stride)(x)
    reference = torch.nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)(x)
    assert ours.shape == reference.shape and torch.allclose(ours, reference, atol=1e-6)
    grad_ours, = torch.autograd.grad(ours.sum(), x)
    grad_reference, = torch.autograd.grad(reference.sum(), x)
    assert torch.allclose(grad_ours, grad_reference, atol=1e-6)
