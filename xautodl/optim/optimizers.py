"""Optimiser and criterion built from an optimisation config (REFERENCE section 4 keys)."""
from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from ..errors import ConfigError


def _get(config: Any, key: str, default: Any = None) -> Any:
    value = config.get(key, default) if hasattr(config, "get") else getattr(config, key, default)
    return default if value is None else value


def build_optimizer(config: Any, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """SGD (nesterov by config) with the config's LR, momentum and weight decay (`decay`)."""
    name = _get(config, "optim", "SGD")
    if name != "SGD":
        raise ConfigError(f"optimiser {name!r} is not supported; the configs of this tool use 'SGD'")
    return torch.optim.SGD(
        params,
        lr=float(config.LR),
        momentum=float(_get(config, "momentum", 0.9)),
        weight_decay=float(_get(config, "decay", 0.0)),
        nesterov=bool(_get(config, "nesterov", False)),
    )


def build_criterion(config: Any) -> nn.Module:
    """`Softmax` -> cross-entropy; `SmoothSoftmax` -> cross-entropy with label smoothing `label_smooth`."""
    name = _get(config, "criterion", "Softmax")
    if name == "Softmax":
        return nn.CrossEntropyLoss()
    if name == "SmoothSoftmax":
        return nn.CrossEntropyLoss(label_smoothing=float(_get(config, "label_smooth", 0.1)))
    raise ConfigError(f"criterion {name!r} is not supported; expected 'Softmax' or 'SmoothSoftmax'")
