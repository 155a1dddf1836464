"""Look up NAS-Bench-201 cells in the NATS-Bench topology benchmark (read with the `nats_bench` package).

The benchmark lives under $TORCH_HOME (else ~/.torch, as `nats_bench` does) either as the folder
`NATS-tss-v1_0-3ffb9-simple/` (a `meta.pickle.pbz2` plus one `<index>.pickle.pbz2` per arch, read lazily) or as the
single file `NATS-tss-v1_0-3ffb9.pickle.pbz2` (read whole at start).

Those files are bz2-compressed pickles. `nats_bench` reads them with `pickle.load`, which runs whatever code a
crafted file names; every read it makes here goes through the datasets' allow-list unpickler instead
(`safe_benchmark_pickles`), so a benchmark file can only hold plain data.
"""
from __future__ import annotations

import bz2
import collections
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats_bench
import nats_bench.api_size
import nats_bench.api_topology
import nats_bench.api_utils

from ..datasets.pickled import UnsafePickleError, load_allow_listed
from ..errors import DataError, XAutoDLError
from ..spaces.nas201 import Arch, validate

TSS_BASE_NAME = "NATS-tss-v1_0-3ffb9"
TSS_FOLDERS = (f"{TSS_BASE_NAME}-simple", f"{TSS_BASE_NAME}-full")
TSS_FILE = f"{TSS_BASE_NAME}.pickle.pbz2"
META_FILE = "meta.pickle.pbz2"
DATASETS = ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120")
LOADED_ARCH_FILES = 16  # arch files of the folder form kept in memory at most (see NatsBenchmark._keep_few_loaded)


# Beyond numpy values and built-in containers (the datasets' allow-list), the only global nats_bench's format may
# name: its results are state dicts of plain values, which older pickles may hold as ordered dicts.
BENCHMARK_GLOBALS = {("collections", "OrderedDict"): collections.OrderedDict}
# The modules of nats_bench that call `pickle_load` (each imported the name, so each gets the safe one).
_NATS_LOADERS = (nats_bench.api_utils, nats_bench.api_topology, nats_bench.api_size)


class UnsafeBenchmarkError(DataError):
    """A benchmark file names a Python object outside the format's allow-list (it could run code)."""


def load_benchmark_pickle(file_path: str | os.PathLike, ext: str = ".pbz2") -> Any:
    """What nats_bench's `pickle_load` returns for `file_path` (the name with or without `ext`), read with the
    allow-list unpickler; UnsafeBenchmarkError when the file names anything else."""
    path = Path(file_path) if Path(file_path).is_file() else Path(f"{file_path}{ext}")
    try:
        with bz2.BZ2File(path, "rb") as handle:
            return load_allow_listed(handle, extra=BENCHMARK_GLOBALS)
    except UnsafePickleError as error:
        raise UnsafeBenchmarkError(
            f"refusing to read the benchmark file {path}: it names the Python object {error}, which could run code, "
            "while NATS-Bench files hold only plain data (dicts, lists, numbers, strings), so this file was not "
            "written by NATS-Bench; delete it and fetch the benchmark again with `python -m xautodl.bench download`"
        ) from None


@contextlib.contextmanager
def safe_benchmark_pickles():
    """Within the block, every benchmark file nats_bench reads goes through `load_benchmark_pickle`."""
    originals = [module.pickle_load for module in _NATS_LOADERS]
    for module in _NATS_LOADERS:
        module.pickle_load = load_benchmark_pickle
    try:
        yield
    finally:
        for module, original in zip(_NATS_LOADERS, originals):
            module.pickle_load = original


def default_torch_home() -> Path:
    """$TORCH_HOME, else ~/.torch (where `nats_bench` looks by default)."""
    home = os.environ.get("TORCH_HOME", "").strip()
    return Path(home).expanduser() if home else Path.home() / ".torch"


def find_benchmark(torch_home: str | os.PathLike | None = None) -> Path | None:
    """The topology benchmark folder (preferred) or file under `torch_home` (default: see `default_torch_home`)."""
    home = Path(torch_home) if torch_home is not None else default_torch_home()
    for folder in TSS_FOLDERS:
        if (home / folder / META_FILE).is_file():
            return home / folder
    return home / TSS_FILE if (home / TSS_FILE).is_file() else None


def missing_benchmark_message(path: str | os.PathLike | None = None) -> str:
    """One line saying that no benchmark is at `path` (default: under $TORCH_HOME) and how to get it."""
    if path is None:
        place = f"under {default_torch_home()} (looked for {TSS_FOLDERS[0]}/ holding {META_FILE}, or {TSS_FILE})"
    else:
        place = f"at {path}"
    return f"NATS-Bench topology benchmark not found {place}; get it with `python -m xautodl.bench download`"


@dataclass(frozen=True)
class DatasetResult:
    """The benchmark's figures for one training setting (accuracies in %, averaged over the trials' seeds)."""

    train_accuracy: float | None
    valid_accuracy: float | None
    test_accuracy: float | None
    params_mb: float
    flops_m: float


@dataclass(frozen=True)
class SimulatedTrial:
    """One trained trial of the benchmark read as a search's evaluation (as nats_bench's `simulate_train_eval`):
    the validation accuracy (%) after `epochs` epochs and the simulated cost in seconds (training up to that epoch
    plus one pass over the validation data)."""

    seed: int
    valid_accuracy: float
    seconds: float


@dataclass(frozen=True)
class BenchResult:
    """What NATS-Bench reports for one arch: its index and, per dataset setting, accuracies and cost."""

    arch: str
    index: int
    hp: str
    datasets: dict[str, DatasetResult]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; an accuracy the benchmark lacks (e.g. valid on cifar10) is left out."""
        accuracy = {}
        for name, result in self.datasets.items():
            splits = {"train": result.train_accuracy, "valid": result.valid_accuracy, "test": result.test_accuracy}
            accuracy[name] = {split: value for split, value in splits.items() if value is not None}
        return {
            "arch": self.arch,
            "index": self.index,
            "hp": self.hp,
            "accuracy": accuracy,
            "params": {name: result.params_mb for name, result in self.datasets.items()},
            "flops": {name: result.flops_m for name, result in self.datasets.items()},
        }

    def format_table(self) -> str:
        """A text table: one row per dataset setting with train / valid / test accuracy, params and FLOPs."""
        def cell(value: float | None) -> str:
            return f"{value:8.2f}" if value is not None else f"{'-':>8}"

        lines = [f"NATS-Bench topology, arch index {self.index}, {self.hp} epochs: {self.arch}",
                 f"{'dataset':<15}{'train %':>8}{'valid %':>8}{'test %':>8}{'params MB':>11}{'FLOPs M':>10}"]
        for name, result in self.datasets.items():
            lines.append(f"{name:<15}{cell(result.train_accuracy)}{cell(result.valid_accuracy)}"
                         f"{cell(result.test_accuracy)}{result.params_mb:11.3f}{result.flops_m:10.2f}")
        return "\n".join(lines)


class NatsBenchmark:
    """An opened topology benchmark; `query(arch)` answers from a per-arch cache after the first look-up."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            with safe_benchmark_pickles():
                self.api = nats_bench.create(str(self.path), "tss", fast_mode=self.path.is_dir(), verbose=False)
        except XAutoDLError:
            raise
        except Exception as error:  # nats_bench reports unreadable files with assorted exception types
            raise DataError(f"cannot read the NATS-Bench topology benchmark at {self.path}: {error!r}; "
                            "delete it and fetch it again with `python -m xautodl.bench download`") from error
        self._cache: dict[tuple[str, str], BenchResult] = {}
        self._trials: dict[tuple[str, str, str, int | None], tuple[SimulatedTrial, ...]] = {}
        self._loaded: collections.deque[int] = collections.deque()  # arch files held by nats_bench, oldest first

    def __len__(self) -> int:
        return len(self.api)

    def query(self, arch: Arch | str, hp: str = "200") -> BenchResult:
        """The benchmark's results for `arch` (an Arch, an arch string or a known name) trained `hp` epochs."""
        arch_str = str(validate(arch))
        key = (arch_str, str(hp))
        if key not in self._cache:
            self._cache[key] = self._lookup(arch_str, str(hp))
        return self._cache[key]

    def simulated_trials(self, arch: Arch | str, dataset: str, hp: str = "12",
                         epoch: int | None = None) -> tuple[SimulatedTrial, ...]:
        """Every trial (one per seed) of `arch` trained `hp` epochs on `dataset` (a dataset setting of DATASETS),
        read after epoch `epoch` (0-based; None: the last) as a search's evaluation; a search picks one at random,
        as nats_bench's `simulate_train_eval` does."""
        arch_str = str(validate(arch))
        key = (arch_str, dataset, str(hp), epoch)
        if key not in self._trials:
            index = self._index(arch_str)
            try:
                with safe_benchmark_pickles():
                    seeds = self._arch_results(index, str(hp)).get_dataset_seeds(dataset)
                    self._trials[key] = tuple(self._simulated_trial(index, dataset, str(hp), epoch, seed)
                                              for seed in seeds)
            except (AssertionError, KeyError, ValueError, TypeError, OSError, EOFError) as error:
                raise DataError(f"the benchmark at {self.path} has no {hp}-epoch validation results with training "
                                f"times on {dataset} for arch {index} ({arch_str}): {error!r}") from error
            finally:
                self._keep_few_loaded(index)
        return self._trials[key]

    def _simulated_trial(self, index: int, dataset: str, hp: str, epoch: int | None, seed: int) -> SimulatedTrial:
        info = self.api.get_more_info(index, dataset, iepoch=epoch, hp=hp, is_random=seed)
        return SimulatedTrial(seed=seed, valid_accuracy=float(info["valid-accuracy"]),
                              seconds=float(info["train-all-time"] + info["valid-per-time"]))

    def _arch_results(self, index: int, hp: str) -> Any:
        """nats_bench's `ArchResults` of arch `index` trained `hp` epochs, read in place (never modified here).

        Its public `query_meta_info_by_index` (and `get_cost_info`, which calls it) deep-copies them, every epoch of
        every trial, on each call: that copying was 63% of an R-EA run's time (cProfile, 60 runs on the real-size
        stand-in). `tests/test_bench.py` checks the answers against those public calls.
        """
        self.api._prepare_info(index)  # reads the arch's file in the folder form, as the public calls do
        infos = self.api.arch2infos_dict.get(index, {})
        if hp not in infos:
            raise ValueError(f"arch {index} has results for hp {sorted(infos)}, not {hp}")
        return infos[hp]

    def _index(self, arch_str: str) -> int:
        index = self.api.query_index_by_arch(arch_str)
        if index < 0:
            raise DataError(f"{arch_str} is not in the benchmark at {self.path}, which holds {len(self)} archs; "
                            "the benchmark files may be incomplete, fetch them again")
        return index

    def _keep_few_loaded(self, index: int) -> None:
        # The folder form keeps every arch file it read in memory (megabytes each: every epoch of every trial), which
        # a multi-trial search over thousands of archs cannot afford: only the last few files read stay (a search
        # often asks for the 200-epoch results of the arch it just evaluated), the numbers used are cached above, and
        # a dropped file is read again if ever needed. The single-file form holds everything from the start.
        if not self.api.fast_mode or index in self._loaded:
            return
        self._loaded.append(index)
        while len(self._loaded) > LOADED_ARCH_FILES:
            self.api.arch2infos_dict.pop(self._loaded.popleft(), None)

    def _lookup(self, arch_str: str, hp: str) -> BenchResult:
        index = self._index(arch_str)
        try:
            with safe_benchmark_pickles():  # the folder form reads an arch's file on its first look-up
                datasets = {name: self._dataset_result(index, name, hp) for name in DATASETS}
        except (AssertionError, KeyError, ValueError, OSError, EOFError) as error:
            # nats_bench asserts on a missing per-arch file and raises KeyError for a missing hp or dataset.
            raise DataError(f"the benchmark at {self.path} has no complete {hp}-epoch results for arch {index} "
                            f"({arch_str}): {error!r}") from error
        finally:
            self._keep_few_loaded(index)
        return BenchResult(arch=arch_str, index=index, hp=hp, datasets=datasets)

    def _dataset_result(self, index: int, dataset: str, hp: str) -> DatasetResult:
        # is_random=False averages the trials, and leaves Python's global RNG (which nats_bench would draw from) alone.
        info = self.api.get_more_info(index, dataset, hp=hp, is_random=False)
        cost = self._arch_results(index, hp).get_compute_costs(dataset)  # = api.get_cost_info, without its copy
        return DatasetResult(train_accuracy=info.get("train-accuracy"), valid_accuracy=info.get("valid-accuracy"),
                             test_accuracy=info.get("test-accuracy"), params_mb=float(cost["params"]),
                             flops_m=float(cost["flops"]))


def open_benchmark(path: str | os.PathLike | None = None, logger: Any = None) -> NatsBenchmark | None:
    """Open the benchmark at `path` (default: found under $TORCH_HOME); None, with a one-line notice, if absent.

    The notice goes through `logger.log` when a logger is given, else to stdout.
    """
    found = find_benchmark() if path is None else Path(path)
    if found is None or not found.exists():
        notice = f"{missing_benchmark_message(path)}. Benchmark look-ups are skipped."
        if logger is not None:
            logger.log(notice)
        else:
            print(notice)
        return None
    return NatsBenchmark(found)
