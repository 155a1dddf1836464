"""Which config file a command uses when none is given, as the original tool chose them: by algorithm and space for
a search, by evaluation net for basic-main, NAS-Bench-201's recipe for train-a-net."""
from __future__ import annotations

_NB201_ALGOS = "configs/nas-benchmark/algos"
# (algorithm, space) -> the optimisation config of a search.
SEARCH_CONFIGS = {
    ("GDAS", "nas-bench-201"): f"{_NB201_ALGOS}/GDAS.config",
    ("DARTS-V1", "nas-bench-201"): f"{_NB201_ALGOS}/DARTS.config",
    ("DARTS-V2", "nas-bench-201"): f"{_NB201_ALGOS}/DARTS.config",
    ("SETN", "nas-bench-201"): f"{_NB201_ALGOS}/SETN.config",
    ("ENAS", "nas-bench-201"): f"{_NB201_ALGOS}/ENAS.config",
    ("RANDOM-NAS", "nas-bench-201"): f"{_NB201_ALGOS}/RANDOM.config",
    ("GDAS", "nasnet"): "configs/search-opts/GDAS-NASNet-CIFAR.config",
    ("DARTS-V1", "nasnet"): "configs/search-opts/DARTS-NASNet-CIFAR.config",
    ("DARTS-V2", "nasnet"): "configs/search-opts/DARTS-NASNet-CIFAR.config",
}
# algorithm -> the NASNet supernet config a NASNet search of it builds unless --model_config names another.
NASNET_SUPERNETS = {
    "GDAS": "configs/search-archs/GDAS-NASNet-CIFAR.config",
    "DARTS-V1": "configs/search-archs/DARTS-NASNet-CIFAR.config",
    "DARTS-V2": "configs/search-archs/DARTS-NASNet-CIFAR.config",
}
# evaluation net ("cifar" or "imagenet", the arch config's `dataset`) -> basic-main's optimisation config.
TRAINING_CONFIGS = {"cifar": "configs/opts/NAS-CIFAR.config", "imagenet": "configs/opts/NAS-IMAGENET.config"}
# train-a-net's optimisation config: NAS-Bench-201's 200-epoch recipe.
NB201_TRAINING_CONFIG = "configs/nas-benchmark/hyper-opts/200E.config"


def search_config(algorithm: str, space: str) -> str:
    """The optimisation config of a search of `algorithm` on `space` (nas-bench-201 or nasnet)."""
    return SEARCH_CONFIGS[(algorithm, space)]


def search_spaces(algorithm: str) -> tuple[str, ...]:
    """The spaces `algorithm` has a search config for (SETN, ENAS and RSPS: NAS-Bench-201 only, as the original)."""
    return tuple(space for name, space in SEARCH_CONFIGS if name == algorithm)


def nasnet_supernet_config(algorithm: str) -> str:
    """The NASNet supernet config of a NASNet search of `algorithm`."""
    return NASNET_SUPERNETS[algorithm]
