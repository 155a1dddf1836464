"""The algorithm registry: one row per search algorithm, everything the rest of the code asks about it.

Adding an algorithm = its module (the step class and, if it needs one, its mixer) plus one row here, a config under
`configs/nas-benchmark/algos/` (listed in `xautodl.config_utils.defaults`) and its driver.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import nn

from ..errors import ConfigError
from .algorithms import GDAS, DartsV1, DartsV2, Mixer, SearchAlgorithm
from .enas import ENAS
from .mixing import GumbelHardMixer, SoftmaxMixer
from .random_nas import RandomNAS
from .setn import SETN
from .weight_sharing import ArchMixer


@dataclass(frozen=True)
class AlgorithmSpec:
    """One row of the algorithm registry: an algorithm's behaviour, everything the rest of the code asks about it.

    `make_mixer(tau, seed)` builds the supernet's edge mixer; `tau_schedule` is the Gumbel temperature of the first
    and of the last epoch, annealed linearly in between (the flags' defaults), or None when the algorithm mixes with
    softmax and has no temperature to schedule, log or plot; `compiles` says whether `--compile` applies (a GDAS
    forward changes its sub-graph every step, so it runs eagerly); `unsupported_precisions` maps an `--amp` value
    the algorithm refuses to the reason. Which config files a search uses lives with the configs
    (`xautodl.config_utils.defaults`).
    The weight-sharing algorithms without a NASNet search (SETN, ENAS, RSPS: the original ran them on
    NAS-Bench-201 only) have no NASNet config there.
    """

    name: str
    step: type[SearchAlgorithm]
    make_mixer: Callable[[float | None, int], Mixer]
    tau_schedule: tuple[float, float] | None
    compiles: bool
    unsupported_precisions: Mapping[str, str]


REGISTRY: dict[str, AlgorithmSpec] = {spec.name: spec for spec in (
    AlgorithmSpec("GDAS", GDAS, lambda tau, seed: GumbelHardMixer(tau=tau, seed=seed), tau_schedule=(10.0, 0.1),
                  compiles=False, unsupported_precisions={}),
    AlgorithmSpec("DARTS-V1", DartsV1, lambda tau, seed: SoftmaxMixer(), tau_schedule=None, compiles=True,
                  unsupported_precisions={}),
    AlgorithmSpec("DARTS-V2", DartsV2, lambda tau, seed: SoftmaxMixer(), tau_schedule=None, compiles=True,
                  unsupported_precisions={"fp16": "DARTS-V2's finite-difference Hessian-vector product is too coarse "
                                                  "in fp16; use --amp bf16 or --amp off"}),
    # One architecture per forward (a new sub-graph every step), hence no torch.compile.
    AlgorithmSpec("SETN", SETN, lambda tau, seed: ArchMixer(seed=seed), tau_schedule=None, compiles=False,
                  unsupported_precisions={}),
    AlgorithmSpec("ENAS", ENAS, lambda tau, seed: ArchMixer(seed=seed), tau_schedule=None, compiles=False,
                  unsupported_precisions={}),
    AlgorithmSpec("RANDOM-NAS", RandomNAS, lambda tau, seed: ArchMixer(seed=seed), tau_schedule=None,
                  compiles=False, unsupported_precisions={}),
)}
ALGORITHMS = tuple(REGISTRY)


def get_algorithm(name: str) -> AlgorithmSpec:
    """The registry row of `name` (GDAS, DARTS-V1, DARTS-V2, SETN, ENAS or RANDOM-NAS)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown search algorithm {name!r}; expected one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def build_mixer(name: str, tau: float | None, seed: int = 0) -> Mixer:
    """The edge mixer the supernet needs for algorithm `name` (GDAS: hard Gumbel sampling at temperature `tau`,
    DARTS: softmax, which takes no temperature: `tau` None)."""
    return get_algorithm(name).make_mixer(tau, seed)


def build_algorithm(name: str, model: nn.Module, criterion: Callable, w_optimizer: torch.optim.Optimizer,
                    a_optimizer: torch.optim.Optimizer, **options: object) -> SearchAlgorithm:
    """The algorithm called `name` (see `REGISTRY`) over `model`; `options` (`grad_clip`, `amp`,
    `forward_model`) go to its step class, which holds their defaults. A precision the algorithm does not support
    stops here with its reason."""
    spec = get_algorithm(name)
    if options.get("amp") in spec.unsupported_precisions:
        raise ConfigError(spec.unsupported_precisions[options["amp"]])
    return spec.step(model, criterion, w_optimizer, a_optimizer, **options)
