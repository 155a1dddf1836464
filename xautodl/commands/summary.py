"""Print a past search run's summary and per-epoch genotype table, and plot its trajectory to a PNG.

Usage: python -m xautodl.summary <run dir> [--seed N] [--plot out.png] [--no_plot]

The run directory is the one a search writes (`seed-{seed}-summary.json` in it); a summary file can be given
directly too. Epochs are printed 1-based, as in the search log. The plot shows the train and valid accuracy, tau
and the entropy of every edge's softmax(alpha) per epoch; by default it goes to
`<run dir>/seed-{seed}-trajectory.png`.
"""
from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Sequence

from ..errors import XAutoDLError
from ..runtime import main_guard
from ..runtime.flags import EntryParser

SUMMARY_GLOB = "seed-*-summary.json"
_SUMMARY_NAME = re.compile(r"seed-(-?\d+)-summary\.json")
# A legend with more entries than this (NASNet: 28 edges) would hide the curves.
MAX_LEGEND_EDGES = 14


def build_parser() -> argparse.ArgumentParser:
    parser = EntryParser(
        prog="python -m xautodl.summary",
        description="Print a search run's summary and per-epoch genotypes; plot its trajectory to a PNG.")
    parser.add_argument("run_dir", help="search run directory (holding seed-{seed}-summary.json) or a summary file")
    parser.add_argument("--seed", type=int, default=None, help="only this seed's run (default: every seed found)")
    parser.add_argument("--plot", default=None, help="PNG path (default: <run dir>/seed-{seed}-trajectory.png)")
    parser.add_argument("--no_plot", action="store_true", help="print only; do not draw the trajectory")
    return parser


def find_summaries(run_dir: str | Path, seed: int | None = None) -> list[Path]:
    """The summary files of `run_dir` (sorted by seed), only `seed`'s when given; a summary file stands for itself."""
    path = Path(run_dir)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise XAutoDLError(f"run directory {path} does not exist; pass the folder a search wrote (the --save_dir of "
                           f"the search, by default output/search-cell-*/<ALGO>-<dataset>-BN<bn>/)")
    found = sorted(path.glob(SUMMARY_GLOB), key=_seed_of)
    if not found:
        raise XAutoDLError(f"no search summary in {path}: expected a file {SUMMARY_GLOB} there, written by a search "
                           f"after its first epoch; is this the run's --save_dir?")
    if seed is None:
        return found
    chosen = [p for p in found if _seed_of(p) == seed]
    if not chosen:
        seeds = ", ".join(str(_seed_of(p)) for p in found)
        raise XAutoDLError(f"no summary for seed {seed} in {path}; the seeds there are {seeds}")
    return chosen


def load_summary(path: str | Path) -> dict:
    """A summary JSON written by the search loop; XAutoDLError when it is unreadable or not a search summary."""
    path = Path(path)
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise XAutoDLError(f"cannot read the search summary {path} ({error}); it may be damaged: the search "
                           f"rewrites it after every epoch, so re-running the search restores it") from None
    required = ("algorithm", "dataset", "seed", "history")
    missing = [key for key in required if key not in summary] if isinstance(summary, dict) else list(required)
    if missing:
        raise XAutoDLError(f"{path} is not a search summary (it lacks {', '.join(missing)}); expected the "
                           f"seed-{{seed}}-summary.json a search writes")
    return summary


def edge_entropies(alphas: dict[str, list[float]]) -> dict[str, float]:
    """Entropy (nats) of each edge's op distribution softmax(alpha); log(#ops) means undecided, 0 decided."""
    return {edge: -sum(p * math.log(p) for p in probs if p > 0) for edge, probs in alphas.items()}


def benchmark_dataset(summary: dict) -> str | None:
    """The benchmark setting whose test accuracy the table shows: the search's dataset, else cifar10."""
    for entry in reversed(summary["history"]):
        accuracy = (entry.get("benchmark") or {}).get("accuracy") or {}
        if accuracy:
            for name in (summary["dataset"], "cifar10"):
                if name in accuracy:
                    return name
            return next(iter(accuracy))
    return None


def format_summary(summary: dict, source: Path | None = None) -> str:
    """The run at a glance: what ran, how far, the final genotype, the best epoch, the time, benchmark results."""
    history = summary["history"]
    best = summary.get("best") or {}
    lines = []
    if source is not None:
        lines.append(f"summary:        {source}")
    lines += [
        f"search:         {summary['algorithm']} on the {summary.get('space', '?')} space",
        f"dataset:        {summary['dataset']}",
        f"seed:           {summary['seed']}",
        f"epochs:         {summary.get('epochs_done', len(history))} of {summary.get('total_epochs', '?')} done",
        f"final genotype: {_one_line(summary.get('final_genotype', '-'))}",
    ]
    if best.get("epoch", -1) >= 0:
        lines.append(f"best valid acc: {best['valid_acc']:.2f}% at epoch {best['epoch'] + 1}")
    seconds = summary.get("search_seconds", sum(entry.get("seconds", 0.0) for entry in history))
    lines.append(f"search time:    {_duration(seconds)}")
    final_benchmark = history[-1].get("benchmark") if history else None
    if final_benchmark and final_benchmark.get("accuracy"):
        lines.append(f"NATS-Bench accuracy of the final genotype (arch index {final_benchmark.get('index', '?')}):")
        for name, accs in final_benchmark["accuracy"].items():
            splits = ", ".join(f"{split} {value:.2f}%" for split, value in accs.items())
            lines.append(f"  {name:<15} {splits}")
    return "\n".join(lines)


def format_history_table(summary: dict) -> str:
    """One row per finished epoch: epoch, train / valid accuracy, tau, benchmark test accuracy, genotype."""
    bench_name = benchmark_dataset(summary)
    header = f"{'epoch':>5} {'train %':>8} {'valid %':>8} {'tau':>7}"
    if bench_name is not None:
        header += f" {bench_name + ' test %':>{max(len(bench_name) + 7, 12)}}"
    rows = [header + "  genotype"]
    for entry in summary["history"]:
        tau = "-" if entry.get("tau") is None else f"{entry['tau']:.3f}"  # DARTS has no temperature
        row = f"{entry['epoch'] + 1:>5} {entry['train_acc']:>8.2f} {entry['valid_acc']:>8.2f} {tau:>7}"
        if bench_name is not None:
            test = ((entry.get("benchmark") or {}).get("accuracy") or {}).get(bench_name, {}).get("test")
            cell = f"{test:.2f}" if test is not None else "-"
            row += f" {cell:>{max(len(bench_name) + 7, 12)}}"
        rows.append(f"{row}  {_one_line(entry['genotype'])}")
    return "\n".join(rows)


def plot_trajectory(summary: dict, out_path: str | Path) -> Path:
    """Draw accuracy, tau and per-edge alpha entropy per epoch into a PNG at `out_path`; returns the path."""
    figure_class, canvas_class = _matplotlib()
    history = summary["history"]
    epochs = [entry["epoch"] + 1 for entry in history]
    figure = figure_class(figsize=(9, 10), constrained_layout=True)
    canvas_class(figure)
    acc_axes, tau_axes, entropy_axes = figure.subplots(3, 1, sharex=True)
    figure.suptitle(f"{summary['algorithm']} on {summary['dataset']}, seed {summary['seed']}")

    acc_axes.plot(epochs, [entry["train_acc"] for entry in history], marker="o", label="train (weight step)")
    acc_axes.plot(epochs, [entry["valid_acc"] for entry in history], marker="o", label="valid (architecture step)")
    acc_axes.set_ylabel("accuracy (%)")
    acc_axes.legend(loc="best")
    acc_axes.grid(alpha=0.3)

    taus = [entry.get("tau") for entry in history]
    if all(tau is None for tau in taus):
        tau_axes.text(0.5, 0.5, f"{summary['algorithm']} mixes ops with softmax(alpha): no Gumbel temperature",
                      ha="center", va="center", transform=tau_axes.transAxes)
        tau_axes.set_yticks([])
    else:
        tau_axes.plot(epochs, taus, marker="o", color="tab:purple")
        tau_axes.grid(alpha=0.3)
    tau_axes.set_ylabel("tau")

    _plot_entropies(entropy_axes, history, epochs)
    entropy_axes.set_xlabel("epoch")
    entropy_axes.xaxis.get_major_locator().set_params(integer=True)

    out_path = Path(out_path)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out_path, dpi=100)
    except OSError as error:
        raise XAutoDLError(f"cannot write the plot {out_path}: {error.strerror or error}; pass a writable --plot "
                           f"path") from None
    return out_path


def _plot_entropies(axes, history: list[dict], epochs: list[int]) -> None:
    with_alphas = [(epoch, entry["alphas"]) for epoch, entry in zip(epochs, history) if entry.get("alphas")]
    axes.set_ylabel("entropy of softmax(alpha) (nats)")
    axes.grid(alpha=0.3)
    # Early in a search every entropy sits near log(#ops): plain numbers read better than an offset.
    axes.ticklabel_format(axis="y", useOffset=False)
    if not with_alphas:
        axes.text(0.5, 0.5, "this summary holds no per-epoch alphas\n(written by an older xautodl)",
                  ha="center", va="center", transform=axes.transAxes)
        return
    edges = list(with_alphas[-1][1])
    for edge in edges:
        points = [(epoch, edge_entropies({edge: alphas[edge]})[edge]) for epoch, alphas in with_alphas if edge in alphas]
        axes.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=f"edge {edge}")
    op_count = len(with_alphas[-1][1][edges[0]])
    axes.axhline(math.log(op_count), color="grey", linestyle="--", linewidth=1,
                 label=f"uniform over {op_count} ops")
    if len(edges) <= MAX_LEGEND_EDGES:
        axes.legend(loc="best", fontsize="small", ncol=2)
    else:
        axes.set_title(f"{len(edges)} edges; dashed: uniform over {op_count} ops", fontsize="small")


def default_plot_path(summary_path: Path, seed: int) -> Path:
    return summary_path.parent / f"seed-{seed}-trajectory.png"


def run(argv: Sequence[str] | None = None) -> list[Path]:
    """Print every chosen run's summary and table and draw its plot; returns the PNG paths written."""
    args = build_parser().parse_args(argv)
    paths = find_summaries(args.run_dir, args.seed)
    if args.plot is not None and len(paths) > 1:
        seeds = ", ".join(str(_seed_of(p)) for p in paths)
        raise XAutoDLError(f"{args.run_dir} holds the runs of seeds {seeds}; --plot draws one run, so pass --seed too")
    written = []
    for index, path in enumerate(paths):
        summary = load_summary(path)
        if index:
            print()
        print(format_summary(summary, path))
        print()
        print(format_history_table(summary) if summary["history"] else "no finished epoch yet")
        if args.no_plot or not summary["history"]:
            continue
        plot = plot_trajectory(summary, args.plot or default_plot_path(path, summary["seed"]))
        print(f"trajectory plot: {plot}")
        written.append(plot)
    return written


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
