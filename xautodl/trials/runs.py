"""Runs of a multi-trial search: one search per seed, each written as one JSON record; a seed whose record exists is
not run again, so re-running the same command resumes an interrupted series of repetitions.

Folder, as the original's `exps/NATS-algos/*.py`: `<save_dir>-tss/<dataset>-T<time budget>/<algorithm folder>/`
(e.g. `output/search-tss/cifar10-T20000/R-EA-SS3/`) holding `log.txt` and `seed-<seed>.json` per run: the one run
record (`xautodl.runtime.run_record`, command `trials`), whose `trials` section is listed in docs/multi-trial.md.
"""
from __future__ import annotations

import dataclasses
import random
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

from ..bench.nats import NatsBenchmark
from ..errors import DataError
from ..runtime.logger import RunLogger
from ..runtime.run_record import RunFiles, new_record, read_record, write_record
from ..runtime.runlock import hold_run_lock, release_run_lock
from ..runtime.serialization import to_plain
from .loop import TrialAlgorithm, TrialLoop

LOCK_NAME = "trials.lock"


def repetition_seeds(seed: int, repeats: int) -> list[int]:
    """`[seed]` for a seed >= 0; for -1, the seeds 1..`repeats` (fixed, so a re-run finds the runs it already has)."""
    return [seed] if seed >= 0 else list(range(1, repeats + 1))


def run_folder(save_dir: str | Path, dataset: str, time_budget: int, algorithm: TrialAlgorithm,
               settings: Any) -> Path:
    """The output folder of the runs, named as the original named it."""
    return Path(f"{save_dir}-tss") / f"{dataset}-T{time_budget}" / algorithm.folder(settings)


def record_path(folder: Path, seed: int) -> Path:
    return RunFiles.of_seed(folder, seed).result


def run_settings(algorithm: TrialAlgorithm, settings: Any, time_budget: int, ops: Sequence[str]) -> dict[str, Any]:
    """The settings a run's outcome depends on (the seed aside), as a plain dict."""
    return {"time_budget": time_budget, "ops": list(ops), **dataclasses.asdict(settings)}


def run_search(algorithm: TrialAlgorithm, bench: NatsBenchmark, dataset: str, seed: int, settings: Any,
               time_budget: int, ops: Sequence[str], args: dict[str, Any] | None = None) -> dict[str, Any]:
    """One search with `seed`; returns its run record (command `trials`; `args`: the command line as plain data)."""
    start = time.perf_counter()
    rng = random.Random(seed)
    trials = TrialLoop(bench, dataset, time_budget, rng, ops)
    algorithm.search(trials, rng, settings)
    result = trials.result()
    wall_seconds = time.perf_counter() - start
    identity = {"algorithm": algorithm.name, "dataset": dataset, "seed": seed,
                "settings": run_settings(algorithm, settings, time_budget, ops)}
    section = {"algorithm": algorithm.name, "dataset": dataset, **result, "wall_seconds": wall_seconds}
    return new_record("trials", run=identity, seed=seed, finished=True, seconds=wall_seconds,
                      args=to_plain(args or {}), section=section)


def _existing_record(path: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    record = read_record(path, "trials")
    if record["run"].get("settings") != settings:
        raise DataError(f"{path} was written with other settings ({record['run'].get('settings')}, now {settings}); "
                        "pass another --save_dir, or delete the folder's records to run them again with these "
                        "settings")
    return record


def run_repetitions(algorithm: TrialAlgorithm, bench: NatsBenchmark, dataset: str, seeds: Sequence[int],
                    settings: Any, time_budget: int, ops: Sequence[str], folder: Path,
                    args: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run the search once per seed, skipping seeds whose record is in `folder`; returns every seed's record."""
    lock = hold_run_lock(folder / LOCK_NAME, folder)
    try:
        with RunLogger(folder, tensorboard=False) as logger:
            return _run_all(algorithm, bench, dataset, seeds, settings, time_budget, ops, folder, logger, args)
    finally:
        release_run_lock(lock)


def _run_all(algorithm, bench, dataset, seeds, settings, time_budget, ops, folder, logger,
             args) -> list[dict[str, Any]]:
    plain_settings = run_settings(algorithm, settings, time_budget, ops)
    records = [_existing_record(record_path(folder, seed), plain_settings) for seed in seeds]
    done = sum(record is not None for record in records)
    logger.log(f"{algorithm.name} on {dataset}, budget {time_budget} simulated s, settings {plain_settings}, "
               f"benchmark {bench.path}: {len(seeds)} run(s) in {folder}" + (f", {done} already done" if done else ""))
    for number, seed in enumerate(seeds):
        if records[number] is not None:
            continue
        record = run_search(algorithm, bench, dataset, seed, settings, time_budget, ops, args)
        write_record(record_path(folder, seed), record)
        records[number] = record
        outcome = record["trials"]
        logger.log(f"[{number + 1}/{len(seeds)}] seed {seed}: {outcome['trials']} trials, "
                   f"{outcome['simulated_seconds']:.0f} simulated s, best {outcome['best_arch']} "
                   f"valid {outcome['best_valid_accuracy']:.2f}% (12 epochs), "
                   f"test {outcome['test_accuracy']:.2f}% (200 epochs), {outcome['wall_seconds']:.2f} s")
    logger.log(summary_line(records))
    return records


def summary_line(records: Sequence[dict[str, Any]]) -> str:
    """Mean and standard deviation of the final test accuracy over `records`."""
    accuracies = [record["trials"]["test_accuracy"] for record in records]
    spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    wall = sum(record["trials"]["wall_seconds"] for record in records)
    return (f"{len(records)} run(s): test accuracy {statistics.mean(accuracies):.2f} +- {spread:.2f}% (200 epochs), "
            f"{wall:.1f} s of search in all")
