"""Choosing the torch device a run uses (`--device auto|cpu|cuda|cuda:N|mps`)."""
from __future__ import annotations

import os

import torch

from xautodl.errors import XAutoDLError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def select_device(name: str = "auto") -> torch.device:
    """The device called `name`; "auto" picks CUDA, then Apple MPS, then the CPU.

    Asking for a CUDA or MPS device that this machine or this PyTorch build lacks raises XAutoDLError saying
    how to fix it, instead of failing later inside a kernel.
    """
    text = str(name).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise XAutoDLError(
            f"unknown device {name!r}; use one of {', '.join(DEVICE_CHOICES)} (or cuda:N for the N-th GPU)"
        ) from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        return _checked_cuda(device, name)
    if device.type == "mps":
        if not _mps_available():
            raise XAutoDLError(
                f"device {name!r} asked for, but Apple MPS is not available here (it needs macOS 12.3+ on Apple "
                "silicon and a PyTorch build with MPS); pass --device cpu or --device auto"
            )
        return device
    raise XAutoDLError(f"unsupported device {name!r}; use one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")


def _checked_cuda(device: torch.device, name: str) -> torch.device:
    if not torch.cuda.is_available():
        raise XAutoDLError(
            f"device {name!r} asked for, but CUDA is not available (no NVIDIA GPU visible, or PyTorch "
            f"{torch.__version__} was built without CUDA); install a CUDA build of PyTorch, check "
            "CUDA_VISIBLE_DEVICES, or pass --device cpu"
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise XAutoDLError(
            f"device {name!r} asked for, but only {count} CUDA device(s) are visible (cuda:0 to cuda:{count - 1}); "
            "pass --device cuda:0 (or another visible index), --device auto or --device cpu"
        )
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def cpu_reason(device: torch.device) -> str:
    """Why a run is on the CPU, for its log header, where a GPU may have been expected: CUDA_VISIBLE_DEVICES is set
    but no GPU is usable, or the PyTorch build has no CUDA. Empty otherwise (not on the CPU, or no sign of a GPU)."""
    if device.type != "cpu" or torch.cuda.is_available():
        return ""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and torch.version.cuda is not None:
        return (f"running on the CPU: CUDA_VISIBLE_DEVICES={visible!r} is set, but PyTorch (CUDA {torch.version.cuda}) "
                f"finds no usable GPU (no NVIDIA driver or device reachable from this process)")
    if visible is not None:
        return (f"running on the CPU: CUDA_VISIBLE_DEVICES={visible!r} is set, but this PyTorch {torch.__version__} "
                f"is a CPU-only build")
    return ""
