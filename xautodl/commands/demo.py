"""The README's first command (`bash scripts/demo.sh`): GDAS finding a cell, checked against baselines, offline.

1. GDAS searches a NAS-Bench-201 cell on scikit-learn's handwritten digits (16x16), logging every epoch the
   genotype and each edge's most probable op with its probability (the search growing confident).
2. The found cell is trained as a TinyNetwork beside the cells that make the point: the ResNet cell (hand-designed),
   random cells of the space (what search is up against) and two collapsed cells (all skip_connect, the DARTS
   failure mode, and all avg_pool_3x3), each the same short way with several training seeds.
3. A table of test accuracies: mean +- std over the training seeds (random cells: over cells and seeds), with the
   number of test images behind each figure and the winner's margin against the noise.

The search runs on a small proxy (C=16, N=1: 3 cells) and the compared cells train in a deeper network (C=8, N=2:
6 cells), as NAS papers search small and train large. The search settings differ from the paper's 250-epoch
CIFAR-10 search because the demo must learn in about a
minute of CPU (measured, see DEMO_SEARCH): 16x16 inputs, a small supernet (C=16, N=1), batch 32 (twice the steps
per epoch), a weight LR of 0.1 instead of 0.025 (`configs/demo/GDAS-digits.config`) and a 10x architecture LR, so
that the alphas leave uniform in the ~1,000 steps a CPU minute holds. The method itself (hard Gumbel sample, one op
per edge, straight-through gradient, tau annealed 10 -> 0.1) is the search entry point's, unchanged.
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path
from typing import Sequence

import torch

from ..config_utils import load_config
from ..config_utils.defaults import NB201_TRAINING_CONFIG
from ..datasets import get_train_test_loaders
from ..runtime import RunLogger, atomic_write_json, main_guard, select_device, seed_everything
from ..runtime.run_record import RunFiles
from ..runtime.flags import EntryParser, positive_int
from ..runtime.precision import to_channels_last, use_channels_last
from ..optim.optimizers import build_criterion, build_optimizer
from ..optim.schedules import schedule_from_config
from ..spaces.nas201 import Arch, TinyNetwork, edge_list, parse_arch
from ..spaces.ops import NB201_OPS
from ..train.loop import Trainer, TrainSettings
from . import search as search_cli

# The search, chosen by measurement on 2 CPU cores (2026-12-02; docs/demo.md has the figures). With the
# paper's settings (LR 0.025, arch LR 3e-4, batch 64) 8 epochs left the supernet at 9-17% train accuracy and every
# softmax(alpha) at 0.20. Measured alternatives: C=8, N=2 (2x slower per step, the supernet at 60-80% after 720
# steps, alphas drifting to none / avg_pool cells); an arch LR of 1e-2 (alphas commit before the weights have
# learned: none / avg_pool cells); 3e-4 (alphas at 0.204-0.213 after 60 epochs); tau 1 -> 0.1 (no better).
DEMO_SEARCH = {
    "config": "configs/demo/GDAS-digits.config",  # GDAS.config with LR 0.1: 0.025 learns too little in ~1,000 steps
    "arch_learning_rate": 3e-3,  # 10x the paper's 3e-4: Adam moves an alpha by about lr per step
    "batch_size": 32,  # 750 train / 750 valid digits make 24 search pairs per epoch
}
COLLAPSED = {"all skip_connect": "skip_connect", "all avg_pool_3x3": "avg_pool_3x3"}


def build_parser() -> argparse.ArgumentParser:
    parser = EntryParser(prog="demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--search_epochs", type=positive_int, default=40, help="GDAS search epochs (24 steps each) (default 40)")
    add("--train_epochs", type=positive_int, default=10, help="training epochs of every compared cell (default 10)")
    add("--search_channel", type=positive_int, default=16, help="channels of the supernet (default 16)")
    add("--search_cells", type=positive_int, default=1, help="cells per stage of the supernet (default 1)")
    add("--channel", type=positive_int, default=8, help="channels of the trained networks (default 8)")
    add("--num_cells", type=positive_int, default=2, help="cells per stage of the trained networks (default 2): "
                                                         "6 cells, so that the cell decides (with 3, collapsed cells "
                                                         "tie with the ResNet cell on the digits)")
    add("--seed", type=int, default=1, help="seed of the search and of the random cells (default 1)")
    add("--train_seeds", type=positive_int, default=2, help="training seeds per cell (default 2)")
    add("--random_cells", type=positive_int, default=3, help="random cells of the space to compare (default 3)")
    add("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    add("--save_dir", default="output/demo", help="where the search, the trainings and results.json go "
                                                  "(default output/demo)")
    return parser


def random_cells(count: int, seed: int) -> list[Arch]:
    """`count` cells drawn uniformly from the NAS-Bench-201 space (5 ops on each of 6 edges)."""
    rng = random.Random(seed)
    return [Arch.from_edge_ops([rng.choice(NB201_OPS) for _ in edge_list(4)]) for _ in range(count)]


def collapsed_cell(op: str) -> Arch:
    return Arch.from_edge_ops([op] * len(edge_list(4)))


def train_cell(arch: Arch, name: str, seed: int, args: argparse.Namespace, device: torch.device,
               logger: RunLogger) -> tuple[float, int]:
    """Train the TinyNetwork of `arch` on the digits for `args.train_epochs` epochs with `seed`; returns its test
    accuracy (%) and the number of test images. A re-run of the demo resumes (or skips) finished trainings."""
    seed_everything(seed)
    # NAS-Bench-201's training recipe, shortened to --train_epochs
    config = load_config(NB201_TRAINING_CONFIG, overrides={"epochs": args.train_epochs, "batch_size": 64})
    train_loader, test_loader, info = get_train_test_loaders("digits", 64, device, seed)
    channels_last = use_channels_last("auto", device)
    model = to_channels_last(TinyNetwork(arch, args.channel, args.num_cells, info.num_classes).to(device),
                             channels_last)
    optimizer = build_optimizer(config, model.parameters())
    schedule = schedule_from_config(optimizer, config)
    settings = TrainSettings(total_epochs=schedule.total_epochs, progress=False, print_freq=0,
                             channels_last=channels_last)
    files = RunFiles(Path(args.save_dir) / "train", f"{name.replace(' ', '-')}-seed-{seed}")
    history = Trainer(model, train_loader, {"test": test_loader}, optimizer, schedule, build_criterion(config),
                      settings, files, {"arch": str(arch), "seed": seed}, logger, keep_best=False).fit()
    return history[-1]["test_acc"], history[-1]["test_count"]


def run_search(args: argparse.Namespace) -> dict:
    """The GDAS search through the search entry point, with the demo's settings."""
    return search_cli.run("GDAS", [
        "--dataset", "digits", "--channel", str(args.search_channel), "--num_cells", str(args.search_cells),
        "--epochs", str(args.search_epochs), "--batch_size", str(DEMO_SEARCH["batch_size"]),
        "--config_path", DEMO_SEARCH["config"], "--arch_learning_rate", str(DEMO_SEARCH["arch_learning_rate"]),
        "--rand_seed", str(args.seed), "--device", args.device, "--save_dir", str(Path(args.save_dir) / "search"),
        "--no_benchmark", "--quiet", "--print_freq", "0"])


def format_results(rows: list[dict], test_images: int) -> list[str]:
    """The final table, the winner and its margin against the seed-to-seed noise."""
    lines = [f"test accuracy on the digits test set ({test_images} images; one image = {100 / test_images:.2f} "
             f"points), mean +- std over training seeds",
             f"   {'cell':<26} {'accuracy %':>16}  {'runs':<22} genotype"]
    for row in rows:
        lines.append(f"   {row['name']:<26} {_mean_std(row['accuracies']):>16}  {row['runs']:<22} {row['genotype']}")
    found = next(row for row in rows if row["name"] == "GDAS-found")
    others = [row for row in rows if row is not found]
    best_other = max(others, key=lambda row: statistics.fmean(row["accuracies"]))
    noise = _seed_noise([row for row in rows if row["name"] != "random cells"])
    margin = statistics.fmean(found["accuracies"]) - statistics.fmean(best_other["accuracies"])
    collapsed = [row for row in rows if row["name"] in COLLAPSED]
    over_collapsed = statistics.fmean(found["accuracies"]) - max(statistics.fmean(r["accuracies"]) for r in collapsed)
    winner = found if margin >= 0 else best_other
    lines.append(f"   best: {winner['name']}; GDAS-found vs the best other cell ({best_other['name']}) "
                 f"{margin:+.2f} points, vs the best collapsed cell {over_collapsed:+.2f} points; seed-to-seed noise "
                 f"(pooled std of one cell over its training seeds) {noise:.2f} points")
    return lines


def run(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    device = select_device(args.device)
    started = time.time()
    print(f"== 1/3 GDAS search on digits ({args.search_epochs} epochs, supernet C={args.search_channel}, "
          f"N={args.search_cells}, {device})")
    summary = run_search(args)
    found = parse_arch(summary["search"]["final_genotype"])
    final = summary["history"][-1]
    print(f"   search: supernet train accuracy {summary['history'][0]['train_acc']:.1f}% (epoch 1) -> "
          f"{final['train_acc']:.1f}% (epoch {len(summary['history'])}); largest softmax(alpha) per edge "
          f"{min(max(p) for p in final['alphas'].values()):.3f}-{max(max(p) for p in final['alphas'].values()):.3f} "
          f"(uniform 0.200); {summary['seconds']:.0f}s")
    candidates = [("GDAS-found", [found]), ("ResNet", [parse_arch("resnet")]),
                  ("random cells", random_cells(args.random_cells, args.seed)),
                  *((name, [collapsed_cell(op)]) for name, op in COLLAPSED.items())]
    seeds = list(range(args.seed, args.seed + args.train_seeds))
    logger = RunLogger(Path(args.save_dir) / "train", log_name="log.txt", tensorboard=False, quiet=True)
    rows, test_images = [], 0
    for name, archs in candidates:
        print(f"== 2/3 training {name} ({len(archs)} cell(s) x {len(seeds)} seed(s), {args.train_epochs} epochs, "
              f"C={args.channel}, N={args.num_cells})")
        accuracies = []
        for index, arch in enumerate(archs):
            for seed in seeds:
                label = name if len(archs) == 1 else f"{name} {index + 1}"
                accuracy, test_images = train_cell(arch, label, seed, args, device, logger)
                accuracies.append(accuracy)
        runs = f"{len(seeds)} seeds" if len(archs) == 1 else f"{len(archs)} cells x {len(seeds)} seeds"
        genotype = str(archs[0]) if len(archs) == 1 else "; ".join(map(str, archs))
        rows.append({"name": name, "accuracies": accuracies, "runs": runs, "genotype": genotype,
                     "per_cell": len(seeds)})
    logger.close()
    print("\n== 3/3 result")
    for line in format_results(rows, test_images):
        print(line)
    seconds = time.time() - started
    print(f"   total time {seconds:.0f}s; files under {args.save_dir}/")
    result = {"found": str(found), "test_images": test_images, "rows": rows, "seconds": seconds,
              "search": {"epochs": args.search_epochs, **DEMO_SEARCH, "tau_max": summary["args"]["tau_max"],
                         "tau_min": summary["args"]["tau_min"],
                         "final_alphas": final["alphas"], "train_acc": [h["train_acc"] for h in summary["history"]]}}
    atomic_write_json(Path(args.save_dir) / "results.json", result)
    return result


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} +- {statistics.stdev(values):.2f}"


def _seed_noise(rows: list[dict]) -> float:
    """Pooled standard deviation over training seeds of the single-cell rows."""
    variances = [statistics.variance(row["accuracies"]) for row in rows if len(row["accuracies"]) > 1]
    return (sum(variances) / len(variances)) ** 0.5 if variances else float("nan")


def main() -> None:
    main_guard(run)


if __name__ == "__main__":
    main()
