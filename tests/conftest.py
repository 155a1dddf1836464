"""Shared pytest set-up: tests marked `cuda` run only where a CUDA device is present; shared fixtures."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch


class RecordingMixer:
    """Wraps a mixer: keeps the alphas of every call (`calls`) and every sample it hands out (`samples`)."""

    def __init__(self, mixer) -> None:
        self.mixer, self.calls, self.samples = mixer, [], []

    @property
    def tau(self) -> float:
        return self.mixer.tau

    @tau.setter
    def tau(self, value: float) -> None:
        self.mixer.tau = value

    def __call__(self, alphas, op_names, **options):
        self.calls.append(alphas)
        self.samples.append(self.mixer(alphas, op_names, **options))
        return self.samples[-1]


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def echo_python(tmp_path) -> Path:
    """A stand-in interpreter that prints its arguments, one per line: a driver that got past its checks shows
    the command line it would run on stdout."""
    fake = tmp_path / "echo-python"
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    return fake
