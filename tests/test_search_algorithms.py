"""GDAS sampling, DARTS-V2's second-order gradient and the tau schedule."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from conftest import batch, tiny_supernet
from xautodl.search.registry import build_algorithm
from xautodl.search.loop import tau_at
from xautodl.search.mixing import GumbelHardMixer, SoftmaxMixer


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
    from xautodl.search.registry import build_mixer

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
