"""BOHB (Falkner et al. ICML 2018) over the cell, with Optuna: its TPE sampler (the kernel-density model BOHB is
built on) proposes cells and its Hyperband pruner stops the weak ones early, the fidelity being the number of
training epochs of the benchmark's 12-epoch schedule, as the original's `exps/NATS-algos/bohb.py` (hpbandster, budgets
1 to 12 epochs, eta 3) used it. docs/multi-trial.md says how close this is to hpbandster's BOHB.

Each evaluation at a budget is charged as a fresh training run of that many epochs, as hpbandster's workers were
(the original's worker looked up `simulate_train_eval(..., iepoch=budget - 1)` for every budget a cell reached).
"""
from __future__ import annotations

import argparse
import importlib
import math
import random
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from ..errors import XAutoDLError
from ..runtime.flags import positive_int
from .loop import NUM_EDGES, PROXY_EPOCHS, TrialAlgorithm, TrialLoop, setting

if TYPE_CHECKING:
    import optuna

# BOHB's model needs d + 1 observations (hpbandster's min_points_in_model default); cells before that are random.
STARTUP_TRIALS = NUM_EDGES + 1
STUDY_NAME = "bohb"  # the pruner assigns Hyperband brackets from a hash of the study name and trial number


def reduction_factor(text: str) -> int:
    """argparse type: an integer >= 2."""
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2, got {value}")
    return value


def epochs_of_schedule(text: str) -> int:
    """argparse type: an epoch count within the benchmark's 12-epoch schedule."""
    value = positive_int(text)
    if value > PROXY_EPOCHS:
        raise argparse.ArgumentTypeError(f"expected 1 to {PROXY_EPOCHS} epochs, got {value}")
    return value


@dataclass(frozen=True)
class BOHBSettings:
    num_samples: int = setting(4, "--num_samples", "candidates the model draws per proposal (TPE's n_ei_candidates)",
                               positive_int)
    eta: int = setting(3, "--eta", "Hyperband's reduction factor between budgets (2 or more)", reduction_factor)
    min_epochs: int = setting(1, "--min_epochs", f"smallest budget, in epochs of the {PROXY_EPOCHS}-epoch schedule",
                              epochs_of_schedule)


def budgets(min_epochs: int, max_epochs: int, eta: int) -> list[int]:
    """The epochs a cell may be evaluated at, as hpbandster spaces them (max x eta^-k, k = s_max .. 0) and its
    workers truncate them (int): 1, 4, 12 for 1..12 epochs and eta 3."""
    s_max = math.floor(math.log(max_epochs / min_epochs) / math.log(eta) + 1e-6)
    return sorted({max(1, int(max_epochs * eta ** -k)) for k in range(s_max, -1, -1)})


def import_optuna() -> ModuleType:
    """Optuna, imported on first use: it is an optional dependency (the `bohb` extra), so the other searches run
    without it."""
    try:
        return importlib.import_module("optuna")
    except ImportError:
        raise XAutoDLError("BOHB needs Optuna, which is not installed: pip install optuna "
                           "(or pip install -e '.[bohb]' in the checkout)") from None


def bohb(trials: TrialLoop, rng: random.Random, settings: BOHBSettings) -> optuna.Study:
    """Ask Optuna for a cell, evaluate it at rising budgets until the pruner stops it or it reaches 12 epochs,
    tell Optuna, while the budget lasts; returns the study."""
    optuna = import_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # multivariate TPE is marked experimental; BOHB's density model is multivariate
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(n_startup_trials=STARTUP_TRIALS, n_ei_candidates=settings.num_samples,
                                             multivariate=True, seed=rng.randrange(2**32))
    pruner = optuna.pruners.HyperbandPruner(min_resource=settings.min_epochs, max_resource=PROXY_EPOCHS,
                                            reduction_factor=settings.eta)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner, study_name=STUDY_NAME)
    distributions = {f"edge-{edge}": optuna.distributions.CategoricalDistribution(trials.ops)
                     for edge in range(NUM_EDGES)}
    ladder = budgets(settings.min_epochs, PROXY_EPOCHS, settings.eta)
    while trials.within_budget:
        trial = study.ask(distributions)
        cell = tuple(trial.params[name] for name in distributions)
        for epochs in ladder:
            if not trials.within_budget:
                return study
            accuracy = trials.evaluate(cell, epochs)
            if epochs == PROXY_EPOCHS:
                study.tell(trial, accuracy)
                break
            trial.report(accuracy, epochs)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
    return study


BOHB = TrialAlgorithm("BOHB", bohb, BOHBSettings, folder=lambda settings: "BOHB")
