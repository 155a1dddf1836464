"""GDAS sampling, DARTS-V2's second-order gradient and the tau schedule."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from xautodl.search.algorithms import build_algorithm
from xautodl.search.loop import tau_at
from xautodl.search.mixing import GumbelHardMixer, SoftmaxMixer
from xautodl.spaces.nas201 import NB201Supernet, SearchCell


def tiny_supernet(mixer, seed: int = 0, **kwargs) -> NB201Supernet:
    torch.manual_seed(seed)
    return NB201Supernet(C=4, N=1, num_classes=5, mixer=mixer, **kwargs)


def batch(seed: int, n: int = 6, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=generator), torch.randint(0, 5, (n,), generator=generator)


def test_gumbel_sample_is_one_hot_with_soft_gradient():
    mixer = GumbelHardMixer(tau=1.0, seed=3)
    alphas = torch.randn(6, 5, requires_grad=True)
    sample = mixer(alphas, ["a"] * 5)
    assert torch.equal(sample.weights.detach().sum(-1), torch.ones(6))
    assert set(sample.weights.detach().flatten().tolist()) <= {0.0, 1.0}
    chosen = [edge[0] for edge in sample.active]
    assert chosen == sample.weights.detach().argmax(-1).tolist()
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
                    # The last layer runs whenever the op does (ops starting with a ReLU are entered through
                    # `after_relu`, which skips the op's own forward hook).
                    last = op[-1] if isinstance(op, torch.nn.Sequential) else op
                    last.register_forward_hook(lambda *_, key=(c, e, k): calls.__setitem__(key, calls.get(key, 0) + 1))
    samples = []
    original_call = model.mixer.__call__
    model.mixer = type("Recorder", (), {"__call__": lambda self, a, n: samples.append(original_call(a, n)) or samples[-1],
                                        "tau": 5.0})()
    x, y = batch(0)
    loss = F.cross_entropy(model(x), y)
    assert len(samples) == 1, "one architecture sample per forward, shared by all cells"
    sampled = [edge[0] for edge in samples[0].active]
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


def test_tau_schedule_is_linear_from_max_to_min():
    taus = [tau_at(e, 250, 10.0, 0.1) for e in range(250)]
    assert taus[0] == 10.0 and taus[-1] == pytest.approx(0.1)
    steps = [a - b for a, b in zip(taus, taus[1:])]
    assert max(steps) == pytest.approx(min(steps)) == pytest.approx(9.9 / 249)
    assert tau_at(0, 1, 10.0, 0.1) == 10.0


def exact_second_order_grad(model, w_optimizer, train, valid) -> torch.Tensor:
    """d/d alpha of L_val(w - xi (grad_w L_train + momentum * buffer + wd * w), alpha) by double backward."""
    group = w_optimizer.param_groups[0]
    names = {id(p): n for n, p in model.named_parameters()}
    weights = list(model.weights())
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    loss = F.cross_entropy(functional_call(model, dict(buffers), (train[0],)), train[1])
    grads = torch.autograd.grad(loss, weights, create_graph=True)
    state = dict(buffers)
    for w, g in zip(weights, grads):
        step = g + group["weight_decay"] * w + group["momentum"] * w_optimizer.state[w]["momentum_buffer"]
        state[names[id(w)]] = w - group["lr"] * step
    valid_loss = F.cross_entropy(functional_call(model, state, (valid[0],)), valid[1])
    return torch.autograd.grad(valid_loss, model.arch_parameters)[0]


def smooth_activations(model: torch.nn.Module) -> torch.nn.Module:
    """ReLU -> SiLU. The exact Hessian of a ReLU net ignores its kinks while finite differences of radius eps cross
    some of them, so the comparison of the two is only meaningful for a smooth network."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.ReLU):
                setattr(module, name, torch.nn.SiLU())
    return model


def darts_v2_grad(radius: float, lr: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """(our DARTS-V2 alpha gradient, the exact one) on a tiny float64 supernet."""
    model = smooth_activations(tiny_supernet(SoftmaxMixer(), seed=7)).double()
    with torch.no_grad():
        model.arch_parameters.normal_(0, 0.5)
    w_opt = torch.optim.SGD(model.weights(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    a_opt = torch.optim.Adam(model.alphas(), lr=0.0)  # lr 0: keep the alphas, read the gradient it was given
    algo = build_algorithm("DARTS-V2", model, F.cross_entropy, w_opt, a_opt)
    algo.hvp_radius = radius
    train, valid = [tuple(t.double() if t.is_floating_point() else t for t in batch(s)) for s in (1, 2)]
    algo.weight_step(*train)  # creates the momentum buffers the virtual step must include
    w_opt.param_groups[0]["lr"] = lr
    exact = exact_second_order_grad(model, w_opt, train, valid)
    algo.arch_step(train, valid)
    return model.arch_parameters.grad.detach().clone(), exact.detach()


def test_darts_v2_matches_exact_second_order_gradient():
    errors = []
    for radius in (1e-1, 1e-2, 1e-3):
        ours, exact = darts_v2_grad(radius)
        errors.append(((ours - exact).norm() / exact.norm()).item())
    # Central differences: second-order accurate, the error falls ~100x per 10x smaller eps.
    assert errors[2] < 1e-5, errors
    assert errors[1] < errors[0] / 30 and errors[2] < errors[1] / 30, errors


def test_darts_v2_second_order_term_changes_the_gradient():
    second_order, _ = darts_v2_grad(1e-2, lr=0.05)
    first_order, exact_first_order = darts_v2_grad(1e-2, lr=0.0)
    assert torch.allclose(first_order, exact_first_order, rtol=1e-10, atol=1e-12)
    assert (second_order - first_order).norm() > 0.05 * first_order.norm()


def test_weight_step_leaves_alphas_and_arch_step_leaves_weights():
    model = tiny_supernet(GumbelHardMixer(tau=10.0, seed=0))
    w_opt = torch.optim.SGD(model.weights(), lr=0.1, momentum=0.9)
    a_opt = torch.optim.Adam(model.alphas(), lr=0.01)
    algo = build_algorithm("GDAS", model, F.cross_entropy, w_opt, a_opt)
    alphas_before = model.arch_parameters.detach().clone()
    algo.weight_step(*batch(0))
    assert torch.equal(model.arch_parameters.detach(), alphas_before)
    weights_before = [p.detach().clone() for p in model.weights()]
    algo.arch_step(batch(0), batch(1))
    assert all(torch.equal(a, b.detach()) for a, b in zip(weights_before, model.weights()))
    assert not torch.equal(model.arch_parameters.detach(), alphas_before)


@pytest.mark.parametrize("algorithm", ["GDAS", "DARTS-V1"])
def test_weight_step_gradient_is_the_same_with_the_alphas_frozen(algorithm):
    """The weight step runs its forward with the alphas frozen (no mixing graph); the weight gradients must equal
    those of a forward that tracks the alphas."""
    from xautodl.search.algorithms import frozen
    from xautodl.search.algorithms import build_mixer

    def weight_grads(freeze: bool) -> list[torch.Tensor | None]:
        model = tiny_supernet(build_mixer(algorithm, tau=5.0, seed=4), seed=3)
        x, y = batch(5)
        if freeze:
            with frozen(model.alphas()):
                loss = F.cross_entropy(model(x), y)
            assert model.arch_parameters.requires_grad, "the flag is restored after the block"
        else:
            loss = F.cross_entropy(model(x), y)
        return list(torch.autograd.grad(loss, list(model.weights()), allow_unused=True))

    tracked, untracked = weight_grads(False), weight_grads(True)
    assert sum(g is not None for g in tracked) > 10
    for a, b in zip(tracked, untracked):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_frozen_restores_requires_grad_after_an_error():
    from xautodl.search.algorithms import frozen

    alphas = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2), requires_grad=False)]
    with pytest.raises(RuntimeError):
        with frozen(alphas):
            assert not any(p.requires_grad for p in alphas)
            raise RuntimeError("boom")
    assert [p.requires_grad for p in alphas] == [True, False]
