"""Search spaces: the shared op registry (`ops`), the NAS-Bench-201 space (`nas201`) and the NASNet space (`nasnet`).

Each space module implements `SearchSpace`; `get_space(name)` is the one registry of spaces (names as the original
tool's `--search_space_name` spells them are accepted too: `darts` is the NASNet space).
"""
from __future__ import annotations

import importlib
from typing import Any, Protocol

from torch import nn

from ..errors import ArchError


class SearchSpace(Protocol):
    """What every space module provides."""

    SPACE_NAME: str  # the one name of the space in code and in files (checkpoints, summaries, genotype dicts)
    OUTPUT_FOLDER: str  # the folder under output/ of its search runs, as the original tool named it

    def parse(self, text: str) -> Any: ...
    def validate(self, genotype: Any) -> Any: ...
    def build_supernet(self, mixer: Any, num_classes: int, *, track_running_stats: bool = True,
                       **options: Any) -> nn.Module: ...
    def build_inference_net(self, genotype: Any, C: int, N: int, num_classes: int, **options: Any) -> nn.Module: ...
    def network_channels(self, C: int, genotype: Any) -> int: ...


_MODULES = {"nas-bench-201": "nas201", "nasnet": "nasnet"}
_ALIASES = {"nats-bench": "nas-bench-201", "darts": "nasnet"}
SPACE_NAMES = tuple(_MODULES)


def canonical_space_name(name: str) -> str:
    """A space name or one of the original tool's aliases -> the space's name; ArchError when unknown."""
    name = _ALIASES.get(name, name)
    if name not in _MODULES:
        known = ", ".join([*_MODULES, *_ALIASES])
        raise ArchError(f"unknown search space {name!r}; expected one of {known}")
    return name


def get_space(name: str) -> SearchSpace:
    """The module of the space called `name` (see `canonical_space_name`)."""
    return importlib.import_module(f"{__name__}.{_MODULES[canonical_space_name(name)]}")


__all__ = ["SPACE_NAMES", "SearchSpace", "canonical_space_name", "get_space"]
