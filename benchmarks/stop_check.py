"""What the preemption check costs under torchrun: after every training step the processes agree whether any of
them was signalled (an 8-byte all-reduce over gloo on the CPU). The loops ask without waiting
(`LaggedMaximum`: the answer comes one step later); a blocking all-reduce (`largest_over_ranks`, used once per
epoch) is measured beside it. Microseconds the calling process spends per step.

    python -m xautodl.runtime.launch --standalone --nproc_per_node 2 benchmarks/stop_check.py [--calls 500]

Between two calls each process works for `--step_ms` (the step: CPU busy, or with --idle asleep, as while it
waits for a GPU). Rank 0 prints the medians over 5 rounds and
their spread. A CPU NAS-Bench-201 GDAS search iteration (batch 64) takes about 350 ms here (docs/speed.md:
185 img/s).
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch.distributed as dist

from xautodl.runtime.distributed import LaggedMaximum, cleanup_distributed, largest_over_ranks


def busy(seconds: float, idle: bool) -> None:
    """A step's work: the CPU busy (a CPU step, or a launch-bound GPU one) or idle (waiting for the GPU)."""
    if idle:
        time.sleep(seconds)
        return
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def microseconds_per_call(check: Callable[[], int], calls: int, step_s: float, idle: bool) -> float:
    spent = 0.0
    for _ in range(calls):
        busy(step_s, idle)
        start = time.perf_counter()
        check()
        spent += time.perf_counter() - start
    return spent / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, taken in turns; the median is reported")
    parser.add_argument("--step_ms", type=float, default=2.0, help="a step's work between two checks (ms)")
    parser.add_argument("--idle", action="store_true", help="the step sleeps instead of keeping the CPU busy")
    args = parser.parse_args()
    dist.init_process_group("gloo")
    try:
        largest_over_ranks(0)  # the connection is set up on the first call
        lagged = LaggedMaximum()
        checks = {"lagged (the loops)": lambda: lagged.ask(0), "blocking": lambda: largest_over_ranks(0)}
        figures: dict[str, list[float]] = {name: [] for name in checks}
        for _ in range(args.rounds):
            for name, check in checks.items():
                figures[name].append(microseconds_per_call(check, args.calls, args.step_ms / 1e3, args.idle))
                lagged.settle()
        if dist.get_rank() == 0:
            for name, values in figures.items():
                kind = "idle" if args.idle else "busy"
                print(f"stop check, {name}, {dist.get_world_size()} processes, {args.step_ms} ms {kind} steps: median "
                      f"{statistics.median(values):.1f} us per step (rounds {min(values):.1f}-{max(values):.1f})")
    finally:
        cleanup_distributed()


if __name__ == "__main__":
    main()
