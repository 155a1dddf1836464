"""Search algorithms: how the weights and the architecture parameters of a supernet are updated.

All three share the weight step (SGD on a train batch, gradient norm clipped). They differ in the mixer the
supernet uses (see `mixing.py`) and in the architecture step on a valid batch:

- GDAS and DARTS-V1: the gradient of the valid loss with respect to the alphas at the current weights.
- DARTS-V2: the second-order gradient through one virtual SGD step (momentum and weight decay included), with the
  Hessian-vector product approximated by central finite differences.

An algorithm only talks to the supernet through `weights()`, `alphas()` and its forward: it never imports a space.
SETN, ENAS and RANDOM-NAS (RSPS), which train one sampled architecture per step, are one module each over
`weight_sharing.py` (NAS-Bench-201 only). `registry.py` lists every algorithm.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call

from ..runtime.distributed import average_over_ranks
from ..runtime.precision import autocast, grad_scaler
from .mixing import GumbelHardMixer, SoftmaxMixer

Batch = tuple[torch.Tensor, torch.Tensor]
Mixer = GumbelHardMixer | SoftmaxMixer


def _assign_grads(params: Sequence[nn.Parameter], grads: Sequence[torch.Tensor | None]) -> None:
    for param, grad in zip(params, grads):
        param.grad = grad


@contextmanager
def frozen(params: Sequence[nn.Parameter]) -> Iterator[None]:
    """Parameters that do not require a gradient inside the block: a forward then records no autograd graph for
    them (for the alphas: no mixing-weight bookkeeping in a weight step, which only differentiates the weights)."""
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


class OptionalPhases:
    """What the search loop asks of every algorithm beyond its two steps, doing nothing unless an algorithm has it:
    `state_objects` (state the algorithm owns, checkpointed with the run), `after_epoch` (work after an epoch's
    steps, on valid batches: ENAS trains its controller) and `select_genotype` (the architecture an epoch reports,
    chosen on valid batches; None: the supernet's own `genotype()`)."""

    # Whether `select_genotype`'s valid batches carry the training augmentation (ENAS, as the original's ENAS.py
    # sets its valid loader) or only the test transform (SETN and RSPS score candidates as the original does).
    selection_augmented: bool = True

    def state_objects(self) -> dict[str, Any]:
        """Objects with `state_dict()` / `load_state_dict()` the algorithm owns, by checkpoint key."""
        return {}

    def after_epoch(self, batches: Iterator[Batch]) -> dict[str, float]:
        """A phase after the epoch's steps, drawing from the endless valid `batches`; its metrics (host numbers)."""
        return {}

    def select_genotype(self, batches: Iterator[Batch], final: bool) -> tuple[Any, dict[str, float]] | None:
        """The architecture the epoch reports, chosen on the endless valid `batches` (`final`: the run's last
        epoch, whose choice is the search's result), with metrics of the choice; None for the supernet's
        `genotype()`."""
        return None


class SearchAlgorithm(OptionalPhases):
    """Weight step shared by every algorithm; `arch_step` is the first-order architecture step. `config` is the
    run's optimisation config, where an algorithm finds its own settings."""

    def __init__(self, model: nn.Module, criterion: Callable, w_optimizer: torch.optim.Optimizer,
                 a_optimizer: torch.optim.Optimizer, grad_clip: float = 5.0, amp: str = "off",
                 forward_model: Callable | None = None, config: Mapping[str, Any] | None = None) -> None:
        self.model = model
        self.config = config
        self.forward_model = model if forward_model is None else forward_model  # e.g. torch.compile(model)
        self.criterion = criterion
        self.w_optimizer = w_optimizer
        self.a_optimizer = a_optimizer
        self.grad_clip = grad_clip
        self.weights: list[nn.Parameter] = list(model.weights())
        self.alphas: list[nn.Parameter] = list(model.alphas())
        self.device = self.weights[0].device
        self.amp = amp
        self.scaler = grad_scaler(amp, self.device)

    def _grads(self, loss: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
        """Gradients of `loss` with respect to `params` only (loss-scaled under fp16), averaged across ranks."""
        scaled = self.scaler.scale(loss) if self.scaler is not None else loss
        return average_over_ranks(torch.autograd.grad(scaled, params, allow_unused=True))

    def _step(self, optimizer: torch.optim.Optimizer, params: Sequence[nn.Parameter], clip: float = 0.0) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if clip > 0:
            nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], clip)
        if self.scaler is not None:
            self.scaler.step(optimizer)
        else:
            optimizer.step()

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step of the weights on a train batch; returns the (detached) loss and logits."""
        with frozen(self.alphas), autocast(self.amp, self.device):
            logits = self.forward_model(x)
            loss = self.criterion(logits, y)
        # Differentiate only with respect to the weights: no alpha gradient is needed here. GDAS leaves the
        # ops it did not sample unused, their gradient is None and the optimiser leaves them untouched.
        _assign_grads(self.weights, self._grads(loss, self.weights))
        self._step(self.w_optimizer, self.weights, self.grad_clip)
        return loss.detach(), logits.detach()

    def arch_step(self, train: Batch, valid: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """One Adam step of the alphas on a valid batch; returns the (detached) valid loss and logits."""
        with autocast(self.amp, self.device):
            logits = self.forward_model(valid[0])
            loss = self.criterion(logits, valid[1])
        # Differentiating only with respect to the alphas skips every weight-gradient kernel.
        _assign_grads(self.alphas, self._grads(loss, self.alphas))
        self._step(self.a_optimizer, self.alphas)
        if self.scaler is not None:
            self.scaler.update()  # once per iteration, after both optimisers stepped
        return loss.detach(), logits.detach()


class GDAS(SearchAlgorithm):
    """GDAS: first-order architecture step; the hard Gumbel sampling lives in the supernet's mixer."""


class DartsV1(SearchAlgorithm):
    """DARTS first order: the architecture gradient is taken at the current weights."""


class DartsV2(SearchAlgorithm):
    """DARTS second order (unrolled): grad_a L_val(w', a) - xi * finite-difference Hessian-vector product.

    w' = w - xi * (grad_w L_train + momentum * momentum_buffer + weight_decay * w), xi the current weight LR;
    w+- = w +- eps * grad_w' L_val(w'), eps = `hvp_radius` / ||grad_w' L_val(w')||.
    """

    def __init__(self, *args, hvp_radius: float = 0.01, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hvp_radius = hvp_radius
        names = {id(p): n for n, p in self.model.named_parameters()}
        self._weight_names = [names[id(p)] for p in self.weights]

    def _train_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast(self.amp, self.device):
            return self.criterion(self.forward_model(x), y)

    def _virtual_weights(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        group = self.w_optimizer.param_groups[0]
        lr, decay, momentum = group["lr"], group["weight_decay"], group.get("momentum", 0.0)
        with frozen(self.alphas):
            loss = self._train_loss(x, y)
        grads = average_over_ranks(torch.autograd.grad(loss, self.weights, allow_unused=True))
        virtual = []
        with torch.no_grad():
            for param, grad in zip(self.weights, grads):
                step = decay * param if grad is None else grad + decay * param
                buffer = self.w_optimizer.state.get(param, {}).get("momentum_buffer")
                if buffer is not None:
                    step = step + momentum * buffer
                virtual.append((param - lr * step).requires_grad_(True))
        return virtual

    def _alpha_grads_at(self, direction: Sequence[torch.Tensor], scale: torch.Tensor, x: torch.Tensor,
                        y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Alpha gradient of the train loss at w + scale * direction (the weights are restored exactly)."""
        saved = [param.detach().clone() for param in self.weights]
        with torch.no_grad():
            for param, d in zip(self.weights, direction):
                param.add_(d * scale)
        loss = self._train_loss(x, y)
        grads = average_over_ranks(torch.autograd.grad(loss, self.alphas))
        with torch.no_grad():
            for param, original in zip(self.weights, saved):
                param.copy_(original)
        return grads

    def arch_step(self, train: Batch, valid: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        lr = self.w_optimizer.param_groups[0]["lr"]
        virtual = self._virtual_weights(*train)
        # The virtual forward must not touch the real BN running statistics: give it copies of the buffers.
        state = {n: b.clone() for n, b in self.model.named_buffers()}
        state.update(zip(self._weight_names, virtual))
        with autocast(self.amp, self.device):
            logits = functional_call(self.model, state, (valid[0],))
            loss = self.criterion(logits, valid[1])
        grads = average_over_ranks(torch.autograd.grad(loss, [*self.alphas, *virtual], allow_unused=True))
        alpha_grads, weight_grads = grads[: len(self.alphas)], grads[len(self.alphas):]
        direction = [torch.zeros_like(w) if g is None else g for w, g in zip(virtual, weight_grads)]
        norm = torch.cat([d.flatten() for d in direction]).norm()
        radius = self.hvp_radius / norm  # a device scalar: no host sync
        grads_plus = self._alpha_grads_at(direction, radius, *train)
        grads_minus = self._alpha_grads_at(direction, -radius, *train)
        final = [ga - lr * (gp - gm) / (2 * radius) for ga, gp, gm in zip(alpha_grads, grads_plus, grads_minus)]
        _assign_grads(self.alphas, final)
        self.a_optimizer.step()
        return loss.detach(), logits.detach()
