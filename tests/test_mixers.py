"""The edge mixers (`xautodl.search.mixing`): GDAS's hard Gumbel sample and straight-through node, DARTS's softmax
mixture, each against its textbook definition (`reference_mixing`, `reference_ops`); and the kernel-count budgets
of their fast paths."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import batch, tiny_supernet
from conftest import RecordingMixer
from reference_mixing import gumbel_edge, softmax_edge
from reference_ops import textbook_twin
from xautodl.search.mixing import GumbelHardMixer, GumbelSample, SoftmaxMixer
from xautodl.spaces.nas201 import NB201_OPS, SearchCell
from xautodl.spaces.ops import NodeInput, Zero


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def _edge_ops() -> list[nn.Module]:
    return [Zero(2, 2, 1), Scale(2.0), Scale(-3.0), Scale(0.5)]


@pytest.mark.parametrize("chosen", [[1, 2], [0, 3], [0, 0], [3, 3]])
def test_gdas_node_equals_the_published_sum_in_value_and_gradient(chosen):
    torch.manual_seed(1)
    logits = torch.randn(2, 4, requires_grad=True)
    probs = F.softmax(logits, dim=-1)
    weights = F.one_hot(torch.tensor(chosen), 4).float() - probs.detach() + probs
    xs = [torch.randn(3, 2, 4, 4, requires_grad=True) for _ in chosen]
    ops = _edge_ops()
    values = weights.detach().gather(-1, torch.tensor(chosen).unsqueeze(-1)).squeeze(-1).tolist()
    sample = GumbelSample(weights, torch.tensor(chosen), list(chosen), values, ["none", "a", "b", "c"])
    node = sample.node([(e, ops, NodeInput(x)) for e, x in enumerate(xs)])
    edge_output = gumbel_edge(weights, chosen, unsampled_gradient=True)
    expected = sum(edge_output(e, ops, x) for e, x in enumerate(xs))
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
    node = sample.node([(e, ops, NodeInput(x)) for e, x in enumerate(xs)])
    edge_output = softmax_edge(logits)  # `none` included: it adds zeros
    expected = sum(edge_output(e, ops, x) for e, x in enumerate(xs))
    torch.testing.assert_close(node, expected)


def test_gumbel_sample_marks_none_as_not_computed():
    sample = GumbelHardMixer(tau=1.0, seed=0)(torch.zeros(3, 4), ["skip", "none", "conv", "none"])
    assert sample.none_ops == frozenset({1, 3})
    assert len(sample.chosen_ops) == 3 and sample.chosen.tolist() == sample.chosen_ops


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


@pytest.mark.budget
def test_darts_cell_computes_one_relu_per_node_input_with_the_same_value_and_gradient():
    """Budget: 3 ReLUs per DARTS NAS-Bench-201 cell (12 without the shared ReLU), same value and gradient."""
    torch.manual_seed(0)
    cell = SearchCell(4, 4, NB201_OPS, affine=False, track_running_stats=False).double()
    logits = torch.randn(6, len(NB201_OPS), dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    # Every node but the last is read by two conv ops on each of its outgoing edges: 12 ReLUs unshared, 3 shared.
    assert _count_aten(lambda: cell(x, SoftmaxMixer()(logits, NB201_OPS)), "aten.relu") == 3
    out = cell(x, SoftmaxMixer()(logits, NB201_OPS))
    edge_output = softmax_edge(logits)
    nodes = [x]
    for inputs in cell.node_edges:  # the textbook sum: every op on its own input, none included
        nodes.append(sum(edge_output(e, cell.edges[e], nodes[source]) for e, source in inputs))
    torch.testing.assert_close(out, nodes[-1])
    upstream = torch.randn_like(out)
    got = torch.autograd.grad(out, [logits, x, *cell.parameters()], upstream)
    want = torch.autograd.grad(nodes[-1], [logits, x, *cell.parameters()], upstream)
    for g, expected in zip(got, want):
        torch.testing.assert_close(g, expected)


@pytest.mark.budget
def test_gdas_node_without_gradient_uses_host_weights_and_equals_the_differentiable_node():
    """Budget: a GDAS weight-step cell multiplies only by weights other than 1.0 (and in its average pools), and
    adds no straight-through terms; its output equals the differentiable forward's."""
    torch.manual_seed(2)
    cell = SearchCell(4, 4, NB201_OPS, affine=False, track_running_stats=False).double()
    logits = torch.randn(6, len(NB201_OPS), dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    for seed in range(5):
        differentiable = GumbelHardMixer(tau=5.0, seed=seed)(logits, NB201_OPS)
        frozen = GumbelHardMixer(tau=5.0, seed=seed)(logits.detach(), NB201_OPS)
        assert frozen.chosen_ops == differentiable.chosen_ops and not frozen.differentiable
        assert frozen.chosen_values == differentiable.weights.detach().gather(
            -1, torch.tensor(frozen.chosen_ops).unsqueeze(-1)).squeeze(-1).tolist()
        assert torch.equal(cell(x, frozen), cell(x, differentiable))
    # Without a gradient to carry, the straight-through offsets cost no kernel, nor does a weight of exactly 1.0:
    # the only multiplications left are the average pools' own and those by weights that differ from 1.0.
    sample = GumbelHardMixer(tau=5.0, seed=0)(logits.detach(), NB201_OPS)
    pools = sum(NB201_OPS[k] == "avg_pool_3x3" for k in sample.chosen_ops)
    scaled = sum(w != 1.0 and NB201_OPS[k] != "none" for k, w in zip(sample.chosen_ops, sample.chosen_values))
    assert pools > 0 and scaled < 6
    assert _count_aten(lambda: cell(x, sample), "aten.mul") == pools + scaled
    assert _count_aten(lambda: cell(x, sample), "aten.addcmul") == 0
    assert _count_aten(lambda: cell(x, sample), "aten.sum") == 0


def test_gumbel_sample_is_one_hot_with_soft_gradient():
    mixer = GumbelHardMixer(tau=1.0, seed=3)
    alphas = torch.randn(6, 5, requires_grad=True)
    sample = mixer(alphas, ["a"] * 5)
    assert torch.equal(sample.weights.detach().sum(-1), torch.ones(6))
    assert set(sample.weights.detach().flatten().tolist()) <= {0.0, 1.0}
    assert sample.chosen_ops == sample.weights.detach().argmax(-1).tolist()
    # Straight-through: the gradient of the hard weights is that of the soft probabilities.
    (sample.weights * torch.arange(5.0)).sum().backward()
    assert alphas.grad is not None and torch.all(alphas.grad.abs().sum(-1) > 0)


def test_gdas_forward_computes_only_the_sampled_op_of_every_edge():
    model = tiny_supernet(GumbelHardMixer(tau=1.0, seed=1))
    with torch.no_grad():  # favour the convolutions: a sample of only none / pooling has a constant output
        model.arch_parameters[:, model.op_names.index("nor_conv_3x3")] = 8.0
    calls: dict[tuple[int, int, int], int] = {}
    for c, cell in enumerate(model.cells):
        if isinstance(cell, SearchCell):
            for e, ops in enumerate(cell.edges):
                for k, op in enumerate(ops):
                    # Every op runs through its own __call__ (the shared ReLU included), so its hooks fire.
                    op.register_forward_hook(lambda *_, key=(c, e, k): calls.__setitem__(key, calls.get(key, 0) + 1))
    model.mixer = RecordingMixer(model.mixer)
    x, y = batch(0)
    loss = F.cross_entropy(model(x), y)
    assert len(model.mixer.samples) == 1, "one architecture sample per forward, shared by all cells"
    sampled = model.mixer.samples[0].chosen_ops
    search_cells = [c for c, cell in enumerate(model.cells) if isinstance(cell, SearchCell)]
    expected = {(c, e, sampled[e]): 1 for c in search_cells for e in range(6)}
    assert calls == expected
    loss.backward()
    grad = model.arch_parameters.grad
    assert grad is not None and torch.all(grad != 0), "every alpha gets a non-zero gradient"


def test_darts_mixes_every_op_but_none():
    model = tiny_supernet(SoftmaxMixer())
    called = []
    cell = next(c for c in model.cells if isinstance(c, SearchCell))
    for k, op in enumerate(cell.edges[0]):
        last = op[-1] if isinstance(op, torch.nn.Sequential) else op  # runs whenever the op does
        last.register_forward_hook(lambda *_, k=k: called.append(k))
    model(batch(0)[0])
    assert sorted(called) == [k for k, name in enumerate(model.op_names) if name != "none"]


@pytest.mark.parametrize("space", ["nas-bench-201", "nasnet"])
@pytest.mark.parametrize("algorithm", ["GDAS", "DARTS-V1"])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_supernet_equals_its_textbook_twin(space, algorithm, layout):
    """Every fast op and mixer path against its textbook form (`reference_ops.textbook_twin`): logits, alpha and
    weight gradients and BN statistics of a whole supernet, in float64."""
    from xautodl.search.registry import build_mixer
    from xautodl.spaces import get_space

    def run(textbook: bool):
        torch.manual_seed(0)
        mixer = build_mixer(algorithm, tau=5.0, seed=1)
        if space == "nasnet":
            config = {"C": 4, "N": 1, "steps": 4, "multiplier": 4, "stem_multiplier": 3, "name": "GDAS"}
            model = get_space(space).build_supernet(mixer, 5, model_config=config)
        else:
            model = get_space(space).build_supernet(mixer, 5, C=4, N=1)
        model = model.double().to(memory_format=layout)
        if textbook:
            model = textbook_twin(model)
        with torch.no_grad():  # spread alphas: GDAS then samples a mix of ops, `none` seldom on a whole node
            for alphas in model.alphas():
                alphas.normal_(0.0, 1.0)
                alphas[:, 0] -= 2.0  # `none` is op 0 in both spaces
        x = batch(0, n=4, size=16)[0].double().contiguous(memory_format=layout)
        logits = model(x)
        probe = torch.linspace(-1, 1, logits.numel(), dtype=torch.float64).view_as(logits)
        grads = torch.autograd.grad((logits * probe).sum(), [*model.alphas(), *model.weights()], allow_unused=True)
        return logits, grads, [b.clone() for b in model.buffers()]

    (fast, fast_grads, fast_buffers), (slow, slow_grads, slow_buffers) = run(False), run(True)
    torch.testing.assert_close(fast, slow)
    alpha_grads = fast_grads[:1 if space == "nas-bench-201" else 2]
    assert all(g.abs().sum() > 0 for g in alpha_grads), "the alphas must get a gradient, else this proves little"
    for got, want in zip(fast_grads, slow_grads):
        if got is None or want is None:  # ops that GDAS did not sample (or `none` edges): zero in the other form
            assert (got is None or not got.any()) and (want is None or not want.any())
        else:
            torch.testing.assert_close(got, want)
    for got, want in zip(fast_buffers, slow_buffers):
        torch.testing.assert_close(got, want)
