"""Print a past search run's summary and per-epoch genotype table, and plot its trajectory to a PNG.

Usage: python -m xautodl.summary <run dir> [--seed N] [--plot out.png] [--no_plot]
       python -m xautodl.summary --table <run dir> [<run dir> ...] [--markdown | --csv] [--plot out.png]

The run directory is the one a search writes (`seed-{seed}-summary.json` in it); a summary file can be given
directly too. Epochs are printed 1-based, as in the search log. The plot shows the train and valid accuracy, tau
and the entropy of every edge's softmax(alpha) per epoch; by default it goes to
`<run dir>/seed-{seed}-trajectory.png`. A folder holding several seeds gives one plot of their mean and range
(`<run dir>/seeds-trajectory.png`); `--seed N` plots one of them.

`--table` prints the NATS-Bench accuracies of the final genotypes of one or more search folders as a NAS paper
does (see `xautodl.commands.results`); it also reads the folders of the multi-trial searches (R-EA, Random,
REINFORCE, BOHB: `seed-{seed}.json` per run).
"""
from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Sequence

from ..errors import XAutoDLError
from ..runtime import main_guard
from ..runtime.flags import EntryParser
from ..runtime.run_record import SEED_RESULT, RunFiles, read_record
from ..search.loop import entropy

SUMMARY_GLOB = RunFiles.of_seed(".", "*").summary.name
EPOCH_FIELDS = ("train_acc", "valid_acc", "genotype")  # what the table and the plot read of every epoch
_SUMMARY_NAME = re.compile(r"seed-(-?\d+)(-summary)?\.json")  # a search's summary or a multi-trial record
# A legend with more entries than this (NASNet: 28 edges) would hide the curves.
MAX_LEGEND_EDGES = 14


def build_parser() -> argparse.ArgumentParser:
    parser = EntryParser(
        prog="python -m xautodl.summary",
        description="Print a search run's summary and per-epoch genotypes; plot its trajectory to a PNG.")
    add = parser.add_argument
    add("run_dirs", nargs="+", metavar="run_dir",
        help="search run directory (holding seed-{seed}-summary.json) or a summary file; with --table, one or more")
    add("--seed", type=int, default=None, help="only this seed's run (default: every seed found)")
    add("--plot", default=None, help="PNG path (default: <run dir>/seed-{seed}-trajectory.png, "
                                     "<run dir>/seeds-trajectory.png for several seeds; with --table "
                                     "<parent of the first run dir>/search-results.png)")
    add("--no_plot", action="store_true", help="print only; do not draw the trajectory")
    add("--table", action="store_true", help="the results table of the final genotypes over seeds, per algorithm "
                                             "and search dataset (NATS-Bench accuracies, search time)")
    add("--markdown", action="store_true", help="with --table: print the table as Markdown")
    add("--csv", action="store_true", help="with --table: print the table as CSV")
    add("--arch_nas_dataset", default=None, help="with --table: NATS-Bench topology benchmark to look up final "
                                                 "genotypes a search did not look up (default: under $TORCH_HOME)")
    return parser


def find_summaries(run_dir: str | Path, seed: int | None = None) -> list[Path]:
    """The summary files of `run_dir` (sorted by seed), only `seed`'s when given; a summary file stands for itself.
    A multi-trial search's folder (no search summary, `seed-{seed}.json` records) gives its records."""
    path = Path(run_dir)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise XAutoDLError(f"run directory {path} does not exist; pass the folder a search wrote (the --save_dir of "
                           f"the search, by default output/search-cell-*/<ALGO>-<dataset>-BN<bn>/)")
    found = sorted(RunFiles.seed_summaries(path) or RunFiles.seed_results(path), key=_seed_of)
    if not found:
        raise XAutoDLError(f"no search summary in {path}: expected a file {SUMMARY_GLOB} there, written by a search "
                           f"after its first epoch (or seed-*.json, a multi-trial search's record); is this the "
                           f"run's --save_dir?")
    if seed is None:
        return found
    chosen = [p for p in found if _seed_of(p) == seed]
    if not chosen:
        seeds = ", ".join(str(_seed_of(p)) for p in found)
        raise XAutoDLError(f"no summary for seed {seed} in {path}; the seeds there are {seeds}")
    return chosen


def load_summary(path: str | Path) -> dict:
    """The run record of a search (`xautodl.runtime.run_record`); XAutoDLError when it is unreadable or not a
    search's."""
    summary = read_record(path, "search")
    history = summary["history"]
    if not isinstance(history, list) or not all(isinstance(entry, dict) for entry in history):
        raise XAutoDLError(f"{path} is damaged: its history is not a list of epoch entries; re-running the search "
                           f"rewrites it from the run's checkpoint")
    for position, entry in enumerate(history):
        entry.setdefault("epoch", position)  # entries lacking a field print '-' instead of stopping the report
    return summary


def missing_fields(summary: dict) -> list[str]:
    """'epoch 3 lacks train_acc' notes for the epoch entries of a damaged or hand-edited summary."""
    notes = []
    for entry in summary["history"]:
        absent = [key for key in EPOCH_FIELDS if key not in entry]
        if absent:
            notes.append(f"epoch {entry['epoch'] + 1} lacks {', '.join(absent)}")
    return notes


def edge_entropies(alphas: dict[str, list[float]]) -> dict[str, float]:
    """Entropy (nats) of each edge's op distribution softmax(alpha); log(#ops) means undecided, 0 decided."""
    return {edge: entropy(probs) for edge, probs in alphas.items()}


def benchmark_dataset(summary: dict) -> str | None:
    """The benchmark setting whose test accuracy the table shows: the search's dataset, else cifar10."""
    for entry in reversed(summary["history"]):
        accuracy = (entry.get("benchmark") or {}).get("accuracy") or {}
        if accuracy:
            for name in (summary["search"]["dataset"], "cifar10"):
                if name in accuracy:
                    return name
            return next(iter(accuracy))
    return None


def format_summary(summary: dict, source: Path | None = None) -> str:
    """The run at a glance: what ran, how far, the final genotype, the best epoch, the time, benchmark results."""
    history, best, search = summary["history"], summary["best"], summary["search"]
    lines = []
    if source is not None:
        lines.append(f"summary:        {source}")
    lines += [
        f"search:         {search['algorithm']} on the {search['space']} space",
        f"dataset:        {search['dataset']}",
        f"seed:           {summary['seed']}",
        f"epochs:         {summary['epochs_done']} of {summary['total_epochs']} done",
        f"final genotype: {_one_line(search['final_genotype'])}",
    ]
    if best["epoch"] >= 0:
        lines.append(f"best valid acc: {best['valid_acc']:.2f}% at epoch {best['epoch'] + 1}")
    lines.append(f"search time:    {_duration(summary['seconds'])}")
    final_benchmark = history[-1].get("benchmark") if history else None
    if final_benchmark and final_benchmark.get("accuracy"):
        lines.append(f"NATS-Bench accuracy of the final genotype (arch index {final_benchmark.get('index', '?')}):")
        for name, accs in final_benchmark["accuracy"].items():
            splits = ", ".join(f"{split} {value:.2f}%" for split, value in accs.items())
            lines.append(f"  {name:<15} {splits}")
    return "\n".join(lines)


def format_history_table(summary: dict) -> str:
    """One row per finished epoch: epoch, train / valid accuracy, tau, benchmark test accuracy, genotype ('-' where
    an entry lacks the field)."""
    bench_name = benchmark_dataset(summary)
    header = f"{'epoch':>5} {'train %':>8} {'valid %':>8} {'tau':>7}"
    if bench_name is not None:
        header += f" {bench_name + ' test %':>{max(len(bench_name) + 7, 12)}}"
    rows = [header + "  genotype"]
    for entry in summary["history"]:
        tau = _number(entry.get("tau"), ".3f")  # DARTS has no temperature: '-'
        row = (f"{entry['epoch'] + 1:>5} {_number(entry.get('train_acc'), '.2f'):>8} "
               f"{_number(entry.get('valid_acc'), '.2f'):>8} {tau:>7}")
        if bench_name is not None:
            test = ((entry.get("benchmark") or {}).get("accuracy") or {}).get(bench_name, {}).get("test")
            row += f" {_number(test, '.2f'):>{max(len(bench_name) + 7, 12)}}"
        rows.append(f"{row}  {_one_line(entry.get('genotype', '-'))}")
    return "\n".join(rows)


def plot_trajectory(summaries: Sequence[dict], out_path: str | Path) -> Path:
    """Draw accuracy, tau and alpha entropy per epoch into a PNG at `out_path`; returns the path.

    One summary: its curves, and one entropy curve per edge. Several (the seeds of one folder): the mean of each
    curve with a band from the lowest to the highest seed, and the mean entropy over edges.
    """
    figure_class, canvas_class = _matplotlib()
    first = summaries[0]
    figure = figure_class(figsize=(10, 10), constrained_layout=True)
    canvas_class(figure)
    acc_axes, tau_axes, entropy_axes = figure.subplots(3, 1, sharex=True)
    seeds = [summary["seed"] for summary in summaries]
    who = f"seed {seeds[0]}" if len(seeds) == 1 else f"{len(seeds)} seeds ({', '.join(map(str, seeds))}): mean and range"
    figure.suptitle(f"{first['search']['algorithm']} on {first['search']['dataset']}, {who}")

    for key, label in (("train_acc", "train (weight step)"), ("valid_acc", "valid (architecture step)")):
        plot_band(acc_axes, [_series(summary, key) for summary in summaries], label)
    acc_axes.set_ylabel("accuracy (%)")
    _outside_legend(acc_axes)
    acc_axes.grid(alpha=0.3)

    taus = [_series(summary, "tau") for summary in summaries]
    if not any(points for points in taus):
        tau_axes.text(0.5, 0.5, f"{first['search']['algorithm']} mixes ops with softmax(alpha): no Gumbel temperature",
                      ha="center", va="center", transform=tau_axes.transAxes)
        tau_axes.set_yticks([])
    else:
        plot_band(tau_axes, taus, None, color="tab:purple")
        tau_axes.grid(alpha=0.3)
    tau_axes.set_ylabel("tau")

    _plot_entropies(entropy_axes, summaries)
    entropy_axes.set_xlabel("epoch")
    entropy_axes.xaxis.get_major_locator().set_params(integer=True)
    return save_figure(figure, out_path)


def plot_band(axes, runs: Sequence[Sequence[tuple[int, float]]], label: str | None, color: str | None = None) -> None:
    """One curve (epoch, value) per run: as it is for one run; for several, their mean at every epoch all runs
    reached, with a shaded band from the lowest to the highest run (the real range, not a standard error)."""
    runs = [run for run in runs if run]
    if not runs:
        return
    if len(runs) == 1:
        axes.plot([p[0] for p in runs[0]], [p[1] for p in runs[0]], marker=".", label=label, color=color)
        return
    values: dict[int, list[float]] = {}
    for run in runs:
        for epoch, value in run:
            values.setdefault(epoch, []).append(value)
    epochs = sorted(epoch for epoch, found in values.items() if len(found) == len(runs))
    mean = [sum(values[e]) / len(runs) for e in epochs]
    line, = axes.plot(epochs, mean, marker=".", color=color,
                      label=None if label is None else f"{label}, mean of {len(runs)}")
    axes.fill_between(epochs, [min(values[e]) for e in epochs], [max(values[e]) for e in epochs],
                      color=line.get_color(), alpha=0.2, linewidth=0)


def save_figure(figure, out_path: str | Path) -> Path:
    """Write `figure` as a PNG; one line naming the path when it cannot be written."""
    out_path = Path(out_path)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out_path, dpi=100)
    except OSError as error:
        raise XAutoDLError(f"cannot write the plot {out_path}: {error.strerror or error}; pass a writable --plot "
                           f"path") from None
    return out_path


def _series(summary: dict, key: str) -> list[tuple[int, float]]:
    """(1-based epoch, value) of every epoch entry holding a number under `key`."""
    return [(entry["epoch"] + 1, float(entry[key])) for entry in summary["history"]
            if isinstance(entry.get(key), (int, float))]


def _outside_legend(axes) -> None:
    """The legend right of the plot, where it cannot cover a curve."""
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", borderaxespad=0.0)


def _plot_entropies(axes, summaries: Sequence[dict]) -> None:
    axes.set_ylabel("entropy of softmax(alpha) (nats)")
    axes.grid(alpha=0.3)
    with_alphas = [[(entry["epoch"] + 1, entry["alphas"]) for entry in summary["history"] if entry.get("alphas")]
                   for summary in summaries]
    if not any(with_alphas):
        axes.text(0.5, 0.5, "this summary holds no per-epoch alphas\n(written by an older xautodl)",
                  ha="center", va="center", transform=axes.transAxes)
        return
    last_alphas = next(points for points in with_alphas if points)[-1][1]
    op_count = len(next(iter(last_alphas.values())))
    uniform = math.log(op_count)
    if len(summaries) == 1:
        edges = list(last_alphas)
        for edge in edges:
            plot_band(axes, [[(epoch, entropy(alphas[edge])) for epoch, alphas in with_alphas[0] if edge in alphas]],
                      f"edge {edge}" if len(edges) <= MAX_LEGEND_EDGES else None)
        title = f"{len(edges)} edges" + ("" if len(edges) <= MAX_LEGEND_EDGES else " (one curve each)")
    else:
        plot_band(axes, [[(epoch, sum(map(entropy, alphas.values())) / len(alphas)) for epoch, alphas in points]
                         for points in with_alphas], "mean over edges", color="tab:green")
        title = "mean entropy over edges"
    axes.axhline(uniform, color="grey", linestyle="--", linewidth=1, label=f"uniform over {op_count} ops")
    # The real range, 0 (decided) to log(#ops) (undecided): zoomed in, alphas that barely left uniform (1.6094372
    # to 1.6094379) would look like a search making up its mind.
    axes.set_ylim(0.0, uniform * 1.05)
    axes.set_title(f"{title}; 0 = one op certain, dashed = uniform", fontsize="small")
    _outside_legend(axes)


def default_plot_path(summary_path: Path, seed: int) -> Path:
    return RunFiles.of_seed(summary_path.parent, seed).trajectory


def run(argv: Sequence[str] | None = None) -> list[Path]:
    """Print every chosen run's summary and table and draw the plot; returns the PNG paths written."""
    args = build_parser().parse_args(argv)
    if args.table:
        from .results import report_table

        return report_table(args)
    if args.markdown or args.csv:
        raise XAutoDLError("--markdown and --csv format the results table: add --table")
    if len(args.run_dirs) > 1:
        raise XAutoDLError(f"{len(args.run_dirs)} run directories given; the summary reads one (the results table "
                           f"of several is --table)")
    paths = find_summaries(args.run_dirs[0], args.seed)
    if any(SEED_RESULT.fullmatch(path.name) for path in paths):
        raise XAutoDLError(f"{args.run_dirs[0]} holds a multi-trial search's records (seed-*.json); this summary "
                           f"reads a weight-sharing search's: pass --table for their row of the results table")
    summaries = []
    for index, path in enumerate(paths):
        summary = load_summary(path)
        if index:
            print()
        print(format_summary(summary, path))
        print()
        print(format_history_table(summary) if summary["history"] else "no finished epoch yet")
        for note in missing_fields(summary):
            print(f"note: {note} (a damaged or edited summary); shown as '-'")
        if summary["history"]:
            summaries.append((path, summary))
    if args.no_plot or not summaries:
        return []
    if len(summaries) == 1:
        path, summary = summaries[0]
        out = args.plot or default_plot_path(path, summary["seed"])
    else:
        out = args.plot or RunFiles.seeds_trajectory(summaries[0][0].parent)
    plot = plot_trajectory([summary for _, summary in summaries], out)
    print(f"trajectory plot: {plot}")
    return [plot]


def _matplotlib():
    """matplotlib's Figure and Agg canvas, imported only when plotting (printing needs no matplotlib)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise XAutoDLError("plotting the trajectory needs matplotlib, which is not installed: run "
                           "`pip install matplotlib`, or pass --no_plot to print the summary only") from None
    return Figure, FigureCanvasAgg


def _seed_of(path: Path) -> int:
    match = _SUMMARY_NAME.fullmatch(path.name)
    return int(match.group(1)) if match else 0


def _number(value, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def _one_line(genotype: str) -> str:
    """NASNet genotypes print as two lines (normal / reduce); the table keeps one row per epoch."""
    return " / ".join(part.strip() for part in str(genotype).splitlines())


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{seconds:.1f} s ({hours}h {minutes:02d}m {secs:02d}s)"


def main() -> None:
    main_guard(run)


if __name__ == "__main__":
    main()
