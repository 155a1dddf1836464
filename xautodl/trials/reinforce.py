"""REINFORCE (Williams 1992) over the cell, as the original's `exps/NATS-algos/reinforce.py`: a policy with one
softmax over the ops per edge (logits initialised at 1e-3 x N(0, 1)), trained by Adam on
`-log p(cell) x (reward - baseline)`, where the reward is the cell's validation accuracy (%) and the baseline a
bias-corrected exponential moving average of the rewards, updated with the current reward before it is used. The
result is the best cell evaluated (not the policy's argmax), as in the original's final version."""
from __future__ import annotations

import argparse
import random
from dataclasses import dataclass

import torch

from ..runtime.flags import positive_float
from .loop import NUM_EDGES, Cell, TrialAlgorithm, TrialLoop, setting


def momentum(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


@dataclass(frozen=True)
class ReinforceSettings:
    learning_rate: float = setting(0.01, "--learning_rate", "Adam learning rate of the policy", positive_float)
    ema_momentum: float = setting(0.9, "--EMA_momentum", "momentum of the moving-average baseline, in [0, 1)",
                                  momentum)


class MovingAverage:
    """Exponential moving average with bias correction (the first value is the average itself)."""

    def __init__(self, momentum: float) -> None:
        self.momentum = momentum
        self._numerator = 0.0
        self._denominator = 0.0

    def update(self, value: float) -> None:
        self._numerator = self.momentum * self._numerator + (1 - self.momentum) * value
        self._denominator = self.momentum * self._denominator + (1 - self.momentum)

    @property
    def value(self) -> float:
        return self._numerator / self._denominator


class EdgePolicy(torch.nn.Module):
    """Independent categorical distributions over the ops, one per edge."""

    def __init__(self, num_ops: int, generator: torch.Generator) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(1e-3 * torch.randn(NUM_EDGES, num_ops, generator=generator))

    def probabilities(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=-1)

    def sample(self, generator: torch.Generator) -> tuple[list[int], torch.Tensor]:
        """One op index per edge and the log-probability of the whole cell (differentiable)."""
        with torch.no_grad():
            actions = torch.multinomial(self.probabilities(), 1, generator=generator).squeeze(1)
        log_prob = torch.log_softmax(self.logits, dim=-1).gather(1, actions.unsqueeze(1)).sum()
        return actions.tolist(), log_prob


def policy_step(optimizer: torch.optim.Optimizer, log_prob: torch.Tensor, reward: float,
                baseline: MovingAverage) -> float:
    """Update the baseline with `reward`, then take one gradient step on -log_prob x (reward - baseline);
    returns the loss."""
    baseline.update(reward)
    loss = -log_prob * (reward - baseline.value)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def reinforce(trials: TrialLoop, rng: random.Random, settings: ReinforceSettings) -> EdgePolicy:
    """Sample a cell from the policy, evaluate it, update the policy, while the budget lasts; returns the policy."""
    generator = torch.Generator().manual_seed(rng.randrange(2**63))
    policy = EdgePolicy(len(trials.ops), generator)
    optimizer = torch.optim.Adam(policy.parameters(), lr=settings.learning_rate)
    baseline = MovingAverage(settings.ema_momentum)
    threads = torch.get_num_threads()
    # A 6 x 5 policy: more than one thread only adds hand-offs (several times slower on a busy CPU).
    torch.set_num_threads(1)
    try:
        while trials.within_budget:
            actions, log_prob = policy.sample(generator)
            cell: Cell = tuple(trials.ops[action] for action in actions)
            policy_step(optimizer, log_prob, trials.evaluate(cell), baseline)
    finally:
        torch.set_num_threads(threads)
    return policy


REINFORCE = TrialAlgorithm("REINFORCE", reinforce, ReinforceSettings,
                           folder=lambda settings: f"REINFORCE-{settings.learning_rate}")
