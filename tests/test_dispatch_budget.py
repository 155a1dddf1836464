"""Budget: ops dispatched per NAS-Bench-201 search iteration may not rise (the figure a launch-bound GPU step scales
with; see benchmarks/dispatch_count.py, which owns the count and the figures)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from dispatch_count import BUDGETS, ops_per_iteration  # noqa: E402

pytestmark = pytest.mark.budget


@pytest.mark.parametrize("algorithm", list(BUDGETS))
def test_ops_dispatched_per_search_iteration_stay_within_budget(algorithm):
    # DARTS computes the same graph every iteration, so two tell its mean; GDAS needs the budget's six samples.
    count = ops_per_iteration(algorithm, iterations=6 if algorithm == "GDAS" else 2)
    assert count <= BUDGETS[algorithm] + 0.05, f"{algorithm}: {count:.1f} ops per iteration > budget {BUDGETS[algorithm]}"
