"""Entry point of the multi-trial searches over NATS-Bench (exps/NATS-algos/{regularized_ea,random_wo_share,
reinforce,bohb}.py): parse the flags, open the benchmark, run the repetitions (xautodl.trials)."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Sequence

from ..bench.nats import NatsBenchmark, find_benchmark, missing_benchmark_message
from ..errors import DataError
from ..runtime.cli import main_guard
from ..runtime.flags import EntryParser, positive_int
from ..spaces.ops import NB201_OPS
from ..trials import ALGORITHMS, TrialAlgorithm
from ..trials.loop import DEFAULT_TIME_BUDGETS, SEARCH_DATASETS
from ..trials.runs import repetition_seeds, run_folder, run_repetitions

# The original repeated a search this many times for seed -1 (its --loops_if_rand).
DEFAULT_REPEATS = 500


def op_list(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated NAS-Bench-201 op names (at least two)."""
    ops = tuple(op.strip() for op in text.split(",") if op.strip())
    unknown = [op for op in ops if op not in NB201_OPS]
    if unknown or len(set(ops)) < 2:
        raise argparse.ArgumentTypeError(f"expected at least two distinct ops of {', '.join(NB201_OPS)}, "
                                         f"comma-separated, got {text!r}")
    return ops


def build_parser(algorithm: TrialAlgorithm) -> argparse.ArgumentParser:
    parser = EntryParser(description=f"{algorithm.name} over the NATS-Bench topology benchmark: each trial is a "
                                     "look-up of 12-epoch results, the search stops at a budget of simulated seconds "
                                     "and reports its best cell's 200-epoch results (docs/multi-trial.md).")
    parser.add_argument("--dataset", default="cifar10", choices=SEARCH_DATASETS, help="search dataset")
    parser.add_argument("--time_budget", type=positive_int, default=None,
                        help="budget in simulated seconds (default: the original's, "
                             + ", ".join(f"{name} {seconds}" for name, seconds in DEFAULT_TIME_BUDGETS.items()) + ")")
    parser.add_argument("--rand_seed", type=int, default=-1,
                        help="seed of one run; -1 (default): --repeats runs with the seeds 1..repeats")
    parser.add_argument("--repeats", type=positive_int, default=DEFAULT_REPEATS, help="runs for --rand_seed -1")
    parser.add_argument("--save_dir", default="./output/search",
                        help="output prefix: runs go to <save_dir>-tss/<dataset>-T<budget>/<algorithm>/")
    parser.add_argument("--arch_nas_dataset", default=None,
                        help="benchmark folder or file (default: NATS-tss-v1_0-3ffb9-simple/ under $TORCH_HOME)")
    parser.add_argument("--op_names", type=op_list, default=NB201_OPS,
                        help="the ops a cell's edges may take, comma-separated (default: all five of NAS-Bench-201)")
    for field in dataclasses.fields(algorithm.settings_type):
        parser.add_argument(field.metadata["flag"], dest=field.name, type=field.metadata["parse"], default=field.default,
                            help=field.metadata["help"])
    return parser


def open_trial_benchmark(path: str | None) -> NatsBenchmark:
    """The benchmark at `path` (default: found under $TORCH_HOME); DataError with one line when it is absent."""
    found = Path(path) if path else find_benchmark()
    if found is None or not found.exists():
        raise DataError(missing_benchmark_message(path))
    return NatsBenchmark(found)


def run(algorithm_name: str, argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Parse `argv` for the search `algorithm_name` (a key of xautodl.trials.ALGORITHMS), run it; returns the
    records of every requested seed."""
    algorithm = ALGORITHMS[algorithm_name]
    args = build_parser(algorithm).parse_args(argv)
    settings = algorithm.settings_type(**{field.name: getattr(args, field.name)
                                          for field in dataclasses.fields(algorithm.settings_type)})
    time_budget = args.time_budget or DEFAULT_TIME_BUDGETS[args.dataset]
    bench = open_trial_benchmark(args.arch_nas_dataset)
    folder = run_folder(args.save_dir, args.dataset, time_budget, algorithm, settings)
    return run_repetitions(algorithm, bench, args.dataset, repetition_seeds(args.rand_seed, args.repeats), settings,
                           time_budget, args.op_names, folder, args=vars(args))


def main(algorithm_name: str) -> None:
    """Command-line entry: `run` with sys.argv, user errors as one line."""
    main_guard(lambda: run(algorithm_name))
