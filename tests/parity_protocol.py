"""What one reference-parity case computes, written once for both sides of `test_reference_parity.py`.

Imported by the pytest process (with our `xautodl`) and by the child that runs the original library (PyPI
`xautodl==1.0.0`, see `parity_reference_side.py`), so it imports nothing but torch. A case is a plain dict; the
side-specific code only builds the model and says how to call it.

A model case runs, in float64: a train-mode forward of a fixed input (global RNG and Gumbel noise seeded with
`case["seed"]`, so both sides draw the same Gumbel noise and drop-path masks), the loss sum(logits * probe) (plus
the auxiliary logits times their probe), its backward, then, where asked, an eval-mode forward. It records the
logits, the gradient of every parameter, every buffer after the train forward (BN running statistics) and, for
GDAS, the op each edge sampled.

A controller case (ENAS) scores the architecture `case["arch"]` with the controller: its log-probability, its
entropy, and the gradient of every parameter of log_prob + `case["entropy_weight"]` * entropy (REINFORCE's loss
with an entropy bonus has this shape).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

# (logits, auxiliary logits or None) from a model's raw output.
Forward = Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


def case_tensor(case: dict, name: str, shape: Iterable[int]) -> torch.Tensor:
    """A float64 tensor both sides agree on: drawn from a generator seeded by the case's seed and the name."""
    generator = torch.Generator().manual_seed(int(case["seed"]) * 1000 + sum(map(ord, name)))
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


def run_model_case(model: nn.Module, case: dict, forward: Forward,
                   prepare_input: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
                   samples: Callable[[], list] = lambda: []) -> dict:
    """Run the case's procedure (module docstring) on `model`, whose weights are already in place."""
    leaf = case_tensor(case, "input", case["input_shape"]).requires_grad_()
    x = prepare_input(leaf)
    model.train()
    torch.manual_seed(int(case["seed"]))
    logits, aux = forward(model, x)
    loss = (logits * case_tensor(case, "probe", logits.shape)).sum()
    if aux is not None:
        loss = loss + (aux * case_tensor(case, "aux_probe", aux.shape)).sum()
    if loss.requires_grad:  # not for an op whose output is constant zeros: every gradient is zero then
        loss.backward()
    result = {
        "logits": logits.detach().contiguous(),
        "aux_logits": None if aux is None else aux.detach().contiguous(),
        "input_grad": leaf.grad if leaf.grad is not None else torch.zeros_like(leaf),
        "grads": {name: p.grad.contiguous() for name, p in model.named_parameters() if p.grad is not None},
        "buffers": {name: b.clone().contiguous() for name, b in model.named_buffers()},
        "samples": [s.tolist() for s in samples()],
    }
    if case.get("eval", False):
        model.eval()
        with torch.no_grad():
            result["eval_logits"] = forward(model, x.detach())[0].contiguous()
    return result


def run_controller_case(controller: nn.Module, case: dict,
                        score: Callable[[nn.Module], tuple[torch.Tensor, torch.Tensor, list[int]]]) -> dict:
    """Run a controller case (module docstring); `score` returns (log_prob, entropy, ops) of `case["arch"]`."""
    log_prob, entropy, ops = score(controller)
    (log_prob + float(case["entropy_weight"]) * entropy).sum().backward()
    return {"log_prob": log_prob.detach().reshape(()), "entropy": entropy.detach().reshape(()), "ops": list(ops),
            "grads": {name: p.grad.contiguous() for name, p in controller.named_parameters() if p.grad is not None}}
