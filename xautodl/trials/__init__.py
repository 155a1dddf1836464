"""Multi-trial searches over the NATS-Bench topology benchmark (the NAS-Bench-201 space): regularized evolution,
random search without weight sharing, REINFORCE and BOHB, each one module over the shared budgeted trial loop
(`loop.py`); `runs.py` repeats a search over seeds and writes one record per run. See docs/multi-trial.md."""
from .bohb import BOHB
from .loop import TrialAlgorithm, TrialLoop
from .random_search import RANDOM
from .regularized_ea import R_EA
from .reinforce import REINFORCE

ALGORITHMS: dict[str, TrialAlgorithm] = {algorithm.name: algorithm for algorithm in (R_EA, RANDOM, REINFORCE, BOHB)}

__all__ = ["ALGORITHMS", "TrialAlgorithm", "TrialLoop"]
