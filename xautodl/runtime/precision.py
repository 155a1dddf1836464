"""Speed switches shared by the search and training loops: mixed precision and the channels-last layout."""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch
from torch import nn

from ..errors import ConfigError

AMP_MODES = ("off", "bf16", "fp16")


def check_amp(mode: str, device: torch.device) -> str:
    """Validate `--amp`: bf16 runs on CPU and CUDA; fp16 needs CUDA (its loss scaling exists for GPUs)."""
    if mode not in AMP_MODES:
        raise ConfigError(f"--amp {mode!r} is not one of {', '.join(AMP_MODES)}")
    if mode == "fp16" and device.type != "cuda":
        raise ConfigError(f"--amp fp16 needs a CUDA device (this run uses {device}); use --amp bf16 or --amp off")
    return mode


def autocast(mode: str, device: torch.device) -> ContextManager:
    """The autocast context of `--amp mode` on `device` (a no-op context for "off")."""
    if mode == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(mode: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A dynamic loss scaler for fp16 (None otherwise: bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device.type) if mode == "fp16" else None


CHANNELS_LAST_MODES = ("auto", "on", "off")


def use_channels_last(setting: str | bool, device: torch.device) -> bool:
    """Resolve `--channels_last {auto,on,off}`: auto means on for CPU runs and off on CUDA.

    Measured (benchmarks/README.md): on CPU the channels-last layout speeds up every search and training step,
    depthwise convolutions above all (NASNet space up to 1.7x); on an H200 it made the GDAS NB201 epoch slower.
    """
    if isinstance(setting, bool):
        return setting
    if setting not in CHANNELS_LAST_MODES:
        raise ConfigError(f"--channels_last {setting!r} is not one of {', '.join(CHANNELS_LAST_MODES)}")
    return setting == "on" or (setting == "auto" and device.type == "cpu")


def to_channels_last(module_or_tensor: nn.Module | torch.Tensor, enabled: bool):
    """The model or a 4-d batch in the channels-last memory layout when `enabled` (unchanged otherwise)."""
    if not enabled:
        return module_or_tensor
    if isinstance(module_or_tensor, nn.Module):
        return module_or_tensor.to(memory_format=torch.channels_last)
    return module_or_tensor.contiguous(memory_format=torch.channels_last)


def add_speed_flags(parser) -> None:
    """--amp, --channels_last, --compile."""
    parser.add_argument("--amp", default="off", choices=AMP_MODES, help="mixed precision (default off)")
    parser.add_argument("--channels_last", nargs="?", const="on", default="auto", choices=CHANNELS_LAST_MODES,
                        help="channels-last memory layout: auto (default) = on for CPU, off for CUDA; a bare "
                             "--channels_last means on")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (DARTS / training)")
