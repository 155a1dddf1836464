"""Random search without weight sharing: evaluate uniformly drawn cells until the budget is spent (the original's
`exps/NATS-algos/random_wo_share.py`)."""
from __future__ import annotations

import random
from dataclasses import dataclass

from .loop import TrialAlgorithm, TrialLoop, random_cell


@dataclass(frozen=True)
class RandomSettings:
    """Random search has no settings of its own."""


def random_search(trials: TrialLoop, rng: random.Random, settings: RandomSettings) -> None:
    """Evaluate a uniformly drawn cell (every edge's op uniform) while the budget lasts."""
    while trials.within_budget:
        trials.evaluate(random_cell(trials.ops, rng))


RANDOM = TrialAlgorithm("RANDOM", random_search, RandomSettings, folder=lambda settings: "RANDOM")
