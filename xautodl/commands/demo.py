"""The README's first command (`bash scripts/demo.sh`): a complete GDAS run in a few CPU minutes, offline.

1. GDAS searches a NAS-Bench-201 cell on scikit-learn's handwritten digits (upscaled to 32x32), printing the
   genotype every epoch.
2. The found cell and the ResNet cell are each trained the same short way as a TinyNetwork, and their test
   accuracies are printed side by side.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

from ..config_utils import load_config
from ..datasets import get_train_test_loaders
from ..runtime import RunLogger, main_guard, select_device, seed_everything
from ..runtime.flags import EntryParser, positive_int
from . import search as search_cli
from ..spaces.nas201 import TinyNetwork, parse_arch
from ..train.loop import Trainer, TrainSettings
from ..optim.optimizers import build_criterion, build_optimizer
from ..optim.schedules import schedule_from_config
from ..runtime.epochs import RunFiles


def build_parser() -> argparse.ArgumentParser:
    parser = EntryParser(prog="demo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add = parser.add_argument
    add("--search_epochs", type=positive_int, default=8)
    add("--train_epochs", type=positive_int, default=10)
    add("--channel", type=positive_int, default=8)
    add("--num_cells", type=positive_int, default=2)
    add("--seed", type=int, default=1)
    add("--device", default="auto")
    add("--save_dir", default="output/demo")
    return parser


def train_cell(arch, args, device, logger: RunLogger, name: str) -> tuple[float, int]:
    """Train the TinyNetwork of `arch` on digits for `args.train_epochs` epochs; returns its test accuracy (%) and
    the number of test images."""
    seed_everything(args.seed)
    config = load_config("configs/nas-benchmark/hyper-opts/200E.config",
                         overrides={"epochs": args.train_epochs, "batch_size": 64})
    train_loader, test_loader, info = get_train_test_loaders("digits", 64, device, args.seed)
    model = TinyNetwork(arch, args.channel, args.num_cells, info.num_classes).to(device)
    optimizer = build_optimizer(config, model.parameters())
    schedule = schedule_from_config(optimizer, config)
    settings = TrainSettings(total_epochs=schedule.total_epochs, progress=True)
    files = RunFiles(Path(args.save_dir) / "train", f"{name}-seed-{args.seed}")
    history = Trainer(model, train_loader, {"test": test_loader}, optimizer, schedule, build_criterion(config),
                      settings, files, {"arch": str(arch)}, logger, keep_best=False).fit()
    return history[-1]["test_acc"], history[-1]["test_count"]


def run(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    device = select_device(args.device)
    started = time.time()
    print(f"== 1/3 GDAS search on digits ({args.search_epochs} epochs, C={args.channel}, N={args.num_cells}, {device})")
    summary = search_cli.run("GDAS", [
        "--dataset", "digits", "--channel", str(args.channel), "--num_cells", str(args.num_cells),
        "--epochs", str(args.search_epochs), "--batch_size", "64", "--rand_seed", str(args.seed),
        "--device", args.device, "--save_dir", str(Path(args.save_dir) / "search"), "--no_benchmark",
        "--tau_max", "10", "--tau_min", "0.1"])
    found = parse_arch(summary["final_genotype"])
    resnet = parse_arch("resnet")
    logger = RunLogger(Path(args.save_dir) / "train", log_name="log.txt", tensorboard=False)
    results = {}
    for step, (name, arch) in enumerate((("found", found), ("resnet", resnet)), start=2):
        print(f"== {step}/3 training the {name} cell {arch} for {args.train_epochs} epochs")
        results[name], test_images = train_cell(arch, args, device, logger, name)
    print(f"\n== result (digits test set, {test_images} images)")
    print(f"   GDAS-found cell  {results['found']:6.2f}%   {found}")
    print(f"   ResNet cell      {results['resnet']:6.2f}%   {resnet}")
    print(f"   total time {time.time() - started:.0f}s; files under {args.save_dir}/")
    logger.close()
    return {"found": str(found), "accuracy": results}


def main() -> None:
    main_guard(run)


if __name__ == "__main__":
    main()
