"""Shared pytest set-up: tests marked `cuda` run only where a CUDA device is present; shared fixtures and helpers
(the repository path, a tiny supernet and its batches, a recording mixer, a tiny CIFAR-10, and the tiny searches
that several tests only read, run once per session: `two_epoch_run` / `run_copy` and `references`)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from xautodl.spaces.nas201 import NB201Supernet

REPO = Path(__file__).resolve().parents[1]  # the checkout (tests run from it or from a clone of it)


def tiny_supernet(mixer, seed: int = 0, **kwargs) -> NB201Supernet:
    """A NAS-Bench-201 supernet small enough for unit tests (C=4, N=1, 5 classes), seeded."""
    torch.manual_seed(seed)
    return NB201Supernet(C=4, N=1, num_classes=5, mixer=mixer, **kwargs)


def batch(seed: int, n: int = 6, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded batch of images and labels for `tiny_supernet`."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=generator), torch.randint(0, 5, (n,), generator=generator)


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


@pytest.fixture
def one_thread():
    """torch on one thread for the test: hundreds of tiny convolutions run fastest so on a small busy CPU, and
    in-process runs then sum floats exactly as the launched runs do (OMP_NUM_THREADS=1)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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


def crash_at_epoch(patch, loop_class: type, method: str, epoch: int = 1):
    """Make `loop_class.<method>(self, epoch)` raise KeyboardInterrupt when it reaches `epoch` (0-based), as a
    process killed during that epoch would: the epoch before is then the last complete checkpoint. `patch` is a
    pytest monkeypatch (or its context); returns the real method."""
    real = getattr(loop_class, method)

    def crashing(self, current, *args, **kwargs):
        if current == epoch:
            raise KeyboardInterrupt
        return real(self, current, *args, **kwargs)

    patch.setattr(loop_class, method, crashing)
    return real


@pytest.fixture
def cifar_home(tmp_path, monkeypatch) -> Path:
    """A tiny CIFAR-10 in a TORCH_HOME of its own, where the entry points look for it."""
    import fakedata

    home = tmp_path / "torch_home"
    fakedata.write_cifar10(home / "cifar.python", n_train=32, n_test=16)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _search_on_one_thread(algorithm: str, argv: list[str]) -> None:
    from xautodl.commands import search

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        search.run(algorithm, argv)
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def two_epoch_run(tmp_path_factory) -> Path:
    """A finished 2-epoch tiny search of 2 steps per epoch (its last checkpoint and the `.prev` of epoch 1), run
    once per session: tests work on copies of it (`run_copy`)."""
    from run_helpers import TWO_STEP_SEARCH

    run_dir = tmp_path_factory.mktemp("searched") / "run"
    _search_on_one_thread("GDAS", [*TWO_STEP_SEARCH, "--epochs", "2", "--save_dir", str(run_dir)])
    return run_dir


@pytest.fixture
def run_copy(two_epoch_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(two_epoch_run, copy)
    return copy


class _UninterruptedSearches:
    """Uninterrupted 3-epoch runs of the tiny search (`run_helpers.TINY_SEARCH`), by algorithm, each made on first
    use and then shared by the session's tests, which only read them."""

    def __init__(self, root: Path) -> None:
        self.root, self.runs = root, {}

    def __getitem__(self, algorithm: str) -> Path:
        if algorithm not in self.runs:
            from run_helpers import TINY_SEARCH

            run_dir = self.root / algorithm
            _search_on_one_thread(algorithm, [*TINY_SEARCH, "--epochs", "3", "--save_dir", str(run_dir)])
            self.runs[algorithm] = run_dir
        return self.runs[algorithm]


@pytest.fixture(scope="session")
def references(tmp_path_factory) -> _UninterruptedSearches:
    """Uninterrupted 3-epoch runs of the tiny search, per algorithm (`references["GDAS"]`: its run folder)."""
    return _UninterruptedSearches(tmp_path_factory.mktemp("uninterrupted"))
