"""The results table a NAS paper prints: `python -m xautodl.summary --table <search folder> [<search folder> ...]`.

For every algorithm and search dataset (and BN setting) found in the folders' `seed-*-summary.json`, the NATS-Bench
accuracies of the runs' final genotypes, as mean +- std over the seeds (sample standard deviation; one seed shows
its value alone), with the search time per run, in the layout of the NAS-Bench-201 paper's Table 5: valid and test
accuracy on CIFAR-10, CIFAR-100 and ImageNet16-120. As there, "CIFAR-10 valid" is the valid accuracy of the
`cifar10-valid` setting (trained on half of the training set) and "CIFAR-10 test" the test accuracy of `cifar10`
(trained on all of it). The published column holds the paper's test figures where they are known.
`--markdown` and `--csv` print the same table for a paper or a spreadsheet. The figure plots, per row, the
NATS-Bench test accuracy (on the search dataset) of each epoch's genotype, mean and range over seeds.

A multi-trial search's folder (R-EA, RANDOM, REINFORCE, BOHB; `seed-{seed}.json`, the `trials` run record) gives one
row per algorithm and search dataset: its runs, their search time in simulated seconds (the benchmark's time of the
trials, not this machine's), the final best arch's 200-epoch accuracies and its parameter-free share. The figure
draws those rows in a second panel, the best-so-far arch's test accuracy against simulated seconds.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import XAutoDLError
from ..runtime.run_record import SEED_RESULT, read_record
from ..spaces.nas201 import parse_arch
from .summary import find_summaries, load_summary, plot_band, save_figure, _matplotlib, _outside_legend

# (column title, NATS-Bench setting, split), in the order of the NAS-Bench-201 paper's Table 5.
COLUMNS = (
    ("CIFAR-10 valid", "cifar10-valid", "valid"),
    ("CIFAR-10 test", "cifar10", "test"),
    ("CIFAR-100 valid", "cifar100", "valid"),
    ("CIFAR-100 test", "cifar100", "test"),
    ("ImageNet16-120 valid", "ImageNet16-120", "valid"),
    ("ImageNet16-120 test", "ImageNet16-120", "test"),
)
# NAS-Bench-201 paper (Dong & Yang, ICLR 2020), Table 5, searched on CIFAR-10, BN tracking as the paper ran it:
# test accuracy (%) on CIFAR-10 / CIFAR-100 / ImageNet16-120, mean +- std over its seeds. SETN, ENAS and RSPS as
# quoted from that table by the ReLIZO paper (Wang et al., NeurIPS 2024, Table 2), whose GDAS and DARTS rows equal
# the ones here. The multi-trial rows (R-EA, Random, REINFORCE, BOHB) have none: no readable copy of the table.
PUBLISHED_TEST = {
    "GDAS": ((93.61, 0.09), (70.70, 0.30), (41.71, 0.98)),
    "DARTS-V1": ((54.30, 0.00), (15.61, 0.00), (16.32, 0.00)),
    "DARTS-V2": ((54.30, 0.00), (15.61, 0.00), (16.32, 0.00)),
    "SETN": ((87.64, 0.00), (59.05, 0.24), (32.52, 0.21)),
    "ENAS": ((53.89, 0.58), (13.96, 2.33), (14.84, 2.10)),
    "RANDOM-NAS": ((84.07, 3.61), (52.31, 5.77), (26.28, 3.09)),
}
PUBLISHED_DATASET = "cifar10"  # the paper's table is of searches on CIFAR-10
MULTI_TRIAL_BN = "-"  # the `bn` of a multi-trial row: it trains nothing
TRAJECTORY_POINTS = 200  # the simulated-time grid a multi-trial row's runs are averaged on


@dataclass
class ResultRow:
    """The runs (seeds) of one algorithm on one search dataset with one BN setting (a multi-trial row: `bn` "-",
    `epochs` empty, `seconds` simulated, `trajectories` against simulated seconds)."""

    algorithm: str
    dataset: str
    bn: str
    seeds: list[int] = field(default_factory=list)
    epochs: list[tuple[int, int]] = field(default_factory=list)  # (done, total) per run
    seconds: list[float] = field(default_factory=list)
    accuracies: dict[str, list[float]] = field(default_factory=dict)  # column title -> one value per run
    trajectories: list[list[tuple[int, float]]] = field(default_factory=list)  # per run: (epoch, test accuracy)
    parameter_free: list[float] = field(default_factory=list)  # per run: the final genotype's parameter-free share
    multi_trial: bool = False  # a multi-trial search (R-EA, RANDOM, REINFORCE, BOHB) over the benchmark

    @property
    def label(self) -> str:
        return self.algorithm if self.multi_trial else f"{self.algorithm} (BN {self.bn})"


def collect_rows(run_dirs: list[str], lookup=None) -> list[ResultRow]:
    """One row per (algorithm, search dataset, BN tracking) over every summary in `run_dirs`.

    `lookup(arch) -> NATS-Bench dict` answers for final genotypes whose search did not look them up (None: such
    runs count for the time but not for the accuracies)."""
    rows: dict[tuple[str, str, str], ResultRow] = {}
    for run_dir in run_dirs:
        for path in find_summaries(run_dir):
            if SEED_RESULT.fullmatch(path.name):
                record = read_record(path, "trials")
                key = (record["trials"]["algorithm"], record["trials"]["dataset"], MULTI_TRIAL_BN)
                row = rows.setdefault(key, ResultRow(*key, multi_trial=True))
                _add_trials_run(row, record, lookup)
                continue
            summary = load_summary(path)
            if not summary["history"]:
                continue  # no epoch finished: no final genotype yet
            bn = str(summary["run"]["track_running_stats"])
            key = (summary["search"]["algorithm"], summary["search"]["dataset"], bn)
            row = rows.setdefault(key, ResultRow(*key))
            _add_run(row, summary, lookup)
    return sorted(rows.values(), key=lambda r: (r.dataset, r.algorithm, r.bn))


def _add_run(row: ResultRow, summary: dict, lookup) -> None:
    history = summary["history"]
    row.seeds.append(summary["seed"])
    row.epochs.append((summary["epochs_done"], summary["total_epochs"]))
    row.seconds.append(float(summary["seconds"]))
    row.parameter_free.append(100.0 * history[-1]["parameter_free_share"])
    final = history[-1].get("benchmark")
    if not final and lookup is not None and history[-1].get("genotype"):
        final = lookup(history[-1]["genotype"])
    accuracy = (final or {}).get("accuracy") or {}
    for title, setting, split in COLUMNS:
        value = accuracy.get(setting, {}).get(split)
        if value is not None:
            row.accuracies.setdefault(title, []).append(float(value))
    dataset = summary["search"]["dataset"]
    trajectory_setting = dataset if dataset in {c[1] for c in COLUMNS} else "cifar10"
    row.trajectories.append([(entry["epoch"] + 1, float(test)) for entry in history
                             if (test := ((entry.get("benchmark") or {}).get("accuracy") or {})
                                 .get(trajectory_setting, {}).get("test")) is not None])


def _add_trials_run(row: ResultRow, record: dict, lookup) -> None:
    """A multi-trial run: its best arch's 200-epoch figures (from the record, else looked up), simulated seconds,
    and the best-so-far arch's test accuracy against simulated seconds."""
    outcome = record["trials"]
    row.seeds.append(record["seed"])
    row.seconds.append(float(outcome["simulated_seconds"]))
    row.parameter_free.append(100.0 * parse_arch(outcome["best_arch"]).parameter_free_share())
    final = outcome.get("best_results")
    if not (final or {}).get("accuracy") and lookup is not None:
        final = lookup(outcome["best_arch"])  # the table's look-up reads hp="200"
    accuracy = (final or {}).get("accuracy") or {}
    for title, setting, split in COLUMNS:
        value = accuracy.get(setting, {}).get(split)
        if value is not None:
            row.accuracies.setdefault(title, []).append(float(value))
    trajectory = outcome.get("trajectory") or {}
    row.trajectories.append([(float(seconds), float(test)) for seconds, test
                             in zip(trajectory.get("seconds", []), trajectory.get("best_test_accuracy", []))
                             if math.isfinite(test)])


Curve = list[tuple[float, float]]


def on_common_grid(runs: list[Curve], points: int = TRAJECTORY_POINTS) -> list[Curve]:
    """Best-so-far curves (simulated seconds, value) read on one grid of seconds, from the latest first evaluation
    to the earliest last one (the span every run covers), each run's value being that of its last evaluation at or
    before the grid point; so the runs can be averaged point by point."""
    runs = [run for run in runs if run]
    if not runs:
        return []
    start, stop = max(run[0][0] for run in runs), min(run[-1][0] for run in runs)
    grid = [start] if stop <= start else [start + (stop - start) * i / (points - 1) for i in range(points)]
    resampled = []
    for run in runs:
        position, curve = 0, []
        for second in grid:
            while position + 1 < len(run) and run[position + 1][0] <= second:
                position += 1
            curve.append((second, run[position][1]))
        resampled.append(curve)
    return resampled


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _cell(values: list[float] | None, digits: int = 2) -> str:
    if not values:
        return "-"
    mean, std = mean_std(values)
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} +- {std:.{digits}f}"


def _epochs_text(epochs: list[tuple[int, int]]) -> str:
    if not epochs:
        return "-"  # a multi-trial search trains no network
    done = sorted({d for d, _ in epochs})
    total = sorted({t for _, t in epochs})
    done_text = str(done[0]) if len(done) == 1 else f"{done[0]}-{done[-1]}"
    return done_text if done == total else f"{done_text} of {'/'.join(map(str, total))}"


def _time_text(seconds: list[float], unit: str = "s") -> str:
    mean, std = mean_std(seconds)
    return f"{mean:.0f} {unit}" if std is None else f"{mean:.0f} +- {std:.0f} {unit}"


def _published(row: ResultRow) -> str:
    figures = PUBLISHED_TEST.get(row.algorithm)
    if figures is None or row.dataset != PUBLISHED_DATASET or row.multi_trial:
        return "-"
    return " / ".join(f"{mean:.2f}+-{std:.2f}" for mean, std in figures)


def table_cells(rows: list[ResultRow]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table as text cells (shared by the text, Markdown and CSV forms)."""
    header = ["method", "search on", "seeds", "epochs", "search time / run", *(c[0] for c in COLUMNS),
              "param-free ops %", "published test C10 / C100 / IN16"]
    body = [[row.label, row.dataset, str(len(row.seeds)), _epochs_text(row.epochs),
             _time_text(row.seconds, "simulated s" if row.multi_trial else "s"),
             *(_cell(row.accuracies.get(c[0])) for c in COLUMNS), _cell(row.parameter_free, digits=0), _published(row)]
            for row in rows]
    return header, body


def format_text(rows: list[ResultRow]) -> str:
    header, body = table_cells(rows)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [header, *body]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:], "", _caption(rows)])


def format_markdown(rows: list[ResultRow]) -> str:
    header, body = table_cells(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("+-", "±") for cell in line) + " |" for line in body]
    return "\n".join([*lines, "", _caption(rows)])


def format_csv(rows: list[ResultRow]) -> str:
    """One line per row with mean and std as separate numeric columns (empty where undefined)."""
    out = io.StringIO()
    writer = csv.writer(out)
    metric_names = [c[0] for c in COLUMNS]
    writer.writerow(["algorithm", "search_dataset", "bn", "seeds", "seed_list", "epochs_done", "epochs_total",
                     "search_seconds_mean", "search_seconds_std", "search_seconds_clock",
                     *[f"{name} {part}" for name in metric_names for part in ("mean", "std", "n")],
                     "parameter_free_percent_mean", "parameter_free_percent_std",
                     "published_test_cifar10", "published_test_cifar100", "published_test_ImageNet16-120"])
    for row in rows:
        seconds_mean, seconds_std = mean_std(row.seconds)
        metrics = []
        for name in metric_names:
            values = row.accuracies.get(name)
            mean, std = mean_std(values) if values else (None, None)
            metrics += [_csv_number(mean), _csv_number(std), len(values or [])]
        published = PUBLISHED_TEST.get(row.algorithm) \
            if row.dataset == PUBLISHED_DATASET and not row.multi_trial else None
        writer.writerow([row.algorithm, row.dataset, row.bn, len(row.seeds), " ".join(map(str, row.seeds)),
                         min((d for d, _ in row.epochs), default=""), max((t for _, t in row.epochs), default=""),
                         _csv_number(seconds_mean), _csv_number(seconds_std),
                         "simulated" if row.multi_trial else "real", *metrics,
                         *map(_csv_number, mean_std(row.parameter_free)),
                         *([f"{m:.2f}" for m, _ in published] if published else ["", "", ""])])
    return out.getvalue().rstrip("\n")


def _csv_number(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _caption(rows: list[ResultRow]) -> str:
    counted = ", ".join(f"{row.label} on {row.dataset}: {len(row.accuracies.get(COLUMNS[1][0], []))} of "
                        f"{len(row.seeds)} runs with benchmark figures" for row in rows)
    return ("Accuracies (%): NATS-Bench (200-epoch training, the benchmark's mean over its training seeds) of each "
            "run's final genotype, mean +- sample std over the search seeds (one seed: its value). "
            f"{counted}. Param-free ops: the share of the final genotype's ops without weights (none, skip_connect, "
            "pooling); most of the cell means the search collapsed. Published: NAS-Bench-201 paper Table 5 (searched "
            "on CIFAR-10)." + (" Multi-trial rows (no BN, no epochs): the best arch each run found, at 200 epochs; "
                               "search time in simulated seconds, the benchmark's time of the trials, not this "
                               "machine's." if any(row.multi_trial for row in rows) else ""))


def plot_test_trajectories(rows: list[ResultRow], out_path: Path) -> Path | None:
    """NATS-Bench test accuracy, one mean-and-range curve per row; None without figures. Weight-sharing rows: each
    epoch's genotype against search epochs; multi-trial rows, in a second panel below (another x axis): the
    best-so-far arch's 200-epoch test accuracy against simulated seconds."""
    panels = [[row for row in rows if row.multi_trial == multi_trial and any(t for t in row.trajectories)]
              for multi_trial in (False, True)]
    panels = [(multi_trial, panel) for multi_trial, panel in zip((False, True), panels) if panel]
    if not panels:
        return None
    figure_class, canvas_class = _matplotlib()
    figure = figure_class(figsize=(10, 5 * len(panels)), constrained_layout=True)
    canvas_class(figure)
    axes_list = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for axes, (multi_trial, panel) in zip(axes_list, panels):
        for row in panel:
            runs = [t for t in row.trajectories if t]
            label = f"{row.label} on {row.dataset} ({len(runs)} {'run' if multi_trial else 'seed'}" \
                    f"{'s' if len(runs) > 1 else ''})"
            plot_band(axes, on_common_grid(runs) if multi_trial else runs, label)
        if multi_trial:
            for line in axes.get_lines():
                line.set_marker("")  # a curve on a grid of seconds, not one point per epoch
            axes.set_xlabel("simulated search time (s): the benchmark's time of the trials")
            axes.set_ylabel("NATS-Bench test accuracy (%) of the best arch so far")
            axes.set_title("multi-trial searches: mean over runs, band = lowest to highest run", fontsize="small")
        else:
            axes.set_xlabel("search epoch")
            axes.set_ylabel("NATS-Bench test accuracy (%) of the epoch's genotype")
            axes.set_title("one curve per algorithm: mean over seeds, band = lowest to highest seed",
                           fontsize="small")
        axes.grid(alpha=0.3)
        _outside_legend(axes)
    return save_figure(figure, out_path)


def report_table(args: argparse.Namespace) -> list[Path]:
    """`--table`: print the table (text, --markdown or --csv) and draw the figure; returns the PNG paths written."""
    if args.markdown and args.csv:
        raise XAutoDLError("--markdown and --csv are two forms of the same table: pass one of them")
    if args.seed is not None:
        raise XAutoDLError("--table reports every seed of the folders; --seed selects one run of the plain summary")
    rows = collect_rows(args.run_dirs, _benchmark_lookup(args.arch_nas_dataset))
    if not rows:
        raise XAutoDLError(f"no finished search epoch in {', '.join(args.run_dirs)}: the table needs runs that "
                           f"wrote their summary after at least one epoch")
    print(format_csv(rows) if args.csv else format_markdown(rows) if args.markdown else format_text(rows))
    if args.no_plot:
        return []
    out = Path(args.plot) if args.plot else Path(args.run_dirs[0]).resolve().parent / "search-results.png"
    plot = plot_test_trajectories(rows, out)
    if plot is None:
        if not args.csv:
            print("no per-epoch benchmark figures in these runs: no test-accuracy plot")
        return []
    if not args.csv:  # a CSV on stdout stays machine-readable
        print(f"test-accuracy plot: {plot}")
    return [plot]


def _benchmark_lookup(path: str | None):
    """NATS-Bench look-up for final genotypes a search did not look up; None when no benchmark is found (quietly:
    the caption then says how many runs have figures)."""
    from ..bench import find_benchmark, open_benchmark

    if path is None and find_benchmark() is None:
        return None
    bench = open_benchmark(path)
    return None if bench is None else (lambda arch: bench.query(arch).to_dict())
