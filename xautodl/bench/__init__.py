"""NATS-Bench (NAS-Bench-201) topology benchmark: find it under $TORCH_HOME, look up arch strings, download it.

`python -m xautodl.bench query '<arch>'` prints the benchmark's table for one arch;
`python -m xautodl.bench download [--space tss|sss]` fetches and unpacks the files.
"""
from __future__ import annotations

from .download import ARCHIVES, download_benchmark, drive_url
from .nats import (
    DATASETS,
    BenchResult,
    DatasetResult,
    NatsBenchmark,
    default_torch_home,
    find_benchmark,
    missing_benchmark_message,
    open_benchmark,
)

__all__ = [
    "ARCHIVES",
    "DATASETS",
    "BenchResult",
    "DatasetResult",
    "NatsBenchmark",
    "default_torch_home",
    "download_benchmark",
    "drive_url",
    "find_benchmark",
    "missing_benchmark_message",
    "open_benchmark",
]
