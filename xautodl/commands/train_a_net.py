"""Train one NAS-Bench-201 architecture the benchmark's way (`exps/NAS-Bench-201/main.py`).

For every seed and every setting (cifar10-valid, cifar10, cifar100, ImageNet16-120) the TinyNetwork of the arch is
trained with the 200E hyper-parameters and evaluated every epoch. One JSON file per (arch, seed) holds, per
setting, params (MB), FLOPs (M), the per-epoch losses and accuracies and the training time. Re-running resumes an
unfinished setting from its checkpoint and skips finished ones.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

import torch

from ..config_utils import load_config
from ..config_utils.defaults import NB201_TRAINING_CONFIG
from ..datasets import NB201_SETTINGS, SPLIT_FILES, get_nb201_loaders
from ..errors import CheckpointError, DataError
from ..runtime import RunLogger, main_guard, select_device, seed_everything, to_plain
from ..runtime.distributed import distributed_job, per_process_batch
from ..runtime.flags import EntryParser, add_common_flags, positive_int
from ..runtime.precision import add_speed_flags, check_amp, to_channels_last, use_channels_last
from ..spaces.nas201 import DEFAULT_CELLS, DEFAULT_CHANNELS, NUM_NODES, TinyNetwork, enumerate_archs, parse_arch
from ..utils.flops import count_flops_m, count_params_mb
from ..train.loop import Trainer, TrainSettings, training_module
from ..optim.optimizers import build_criterion, build_optimizer
from ..optim.schedules import schedule_from_config
from ..runtime.device import cpu_reason
from ..runtime.epochs import steps_per_epoch
from ..runtime.run_record import RunFiles, development_build_checkpoint, new_record, read_record, write_record
from ..runtime.wandb_log import wandb_options

DRIVER = "scripts-search/NAS-Bench-201/train-a-net.sh"
SEEDS = (777, 888, 999)  # NAS-Bench-201 trained every arch with these three seeds


def driver_command(arch: str) -> str:
    """The bash command that trains `arch` the NAS-Bench-201 way (C and N of the benchmark's networks)."""
    return f"bash {DRIVER} '{arch}' {DEFAULT_CHANNELS} {DEFAULT_CELLS}"


def build_parser() -> argparse.ArgumentParser:
    parser = EntryParser(prog="main.py", description="Train NAS-Bench-201 architectures the benchmark's way.")
    add = parser.add_argument
    add("--arch", default=None, help="arch string or known name (e.g. resnet)")
    add("--mode", default=None, help="original tool's form: specific-<arch string or name>")
    add("--save_dir", default="output/NAS-BENCH-201-4", help="folder of the result files and checkpoints")
    add("--max_node", type=positive_int, default=NUM_NODES, help="nodes of the NAS-Bench-201 cell")
    add("--channel", type=positive_int, default=DEFAULT_CHANNELS, help="channels of the first stage")
    add("--num_cells", type=positive_int, default=DEFAULT_CELLS, help="cells per stage")
    add("--datasets", nargs="+", default=list(NB201_SETTINGS), help=f"subset of {' '.join(NB201_SETTINGS)}")
    add("--xpaths", nargs="+", default=None, help="one data folder per dataset (default: from $TORCH_HOME)")
    add("--seeds", nargs="+", type=int, default=list(SEEDS), help="one training run per seed")
    add("--config_path", default=NB201_TRAINING_CONFIG, help="optimisation config")
    add("--split_dir", default=None, help="folder of split files replacing the shipped ones (same file names)")
    add("--use_less", type=int, default=0, help="accepted for compatibility; ignored")
    add("--splits", nargs="+", type=int, default=None, help="accepted for compatibility; ignored")
    add_common_flags(parser)
    add_speed_flags(parser)
    return parser


def resolve_arch(args: argparse.Namespace):
    text = args.arch
    if text is None and args.mode:
        if not args.mode.startswith("specific-"):
            raise DataError(f"--mode {args.mode!r} is not supported: use --mode specific-<arch> or --arch <arch>")
        text = args.mode[len("specific-"):]
    if text is None:
        raise DataError("no architecture given: pass --arch '<arch string or name>' (e.g. --arch resnet)")
    return parse_arch(text)


def arch_index(arch) -> int:
    """The arch's position in the enumeration of the 15,625 cells (names its result files)."""
    return enumerate_archs().index(arch)


def _data_paths(args: argparse.Namespace) -> dict[str, str | None]:
    unknown = [d for d in args.datasets if d not in NB201_SETTINGS]
    if unknown:
        raise DataError(f"unknown dataset setting(s) {', '.join(unknown)}; expected {', '.join(NB201_SETTINGS)}")
    if args.xpaths is not None and len(args.xpaths) != len(args.datasets):
        raise DataError(f"--xpaths has {len(args.xpaths)} folders for {len(args.datasets)} --datasets; give one each")
    paths = args.xpaths or [args.data_path] * len(args.datasets)
    return dict(zip(args.datasets, paths))


def _split_file(args: argparse.Namespace, setting: str) -> Path | None:
    if args.split_dir is None or setting == "cifar10":
        return None
    name = "cifar10" if setting == "cifar10-valid" else setting
    return Path(args.split_dir) / SPLIT_FILES[name]


def train_setting(args, arch, seed: int, setting: str, data_path, files: RunFiles, logger: RunLogger, device,
                  rank: int = 0, world_size: int = 1) -> dict:
    """Train `arch` with `seed` on one setting (resuming its checkpoint in `files`) as process `rank` of
    `world_size`; returns that setting's result."""
    _refuse_development_layout(files)
    config = load_config(args.config_path, overrides={k: getattr(args, k) for k in ("epochs", "batch_size")
                                                        if getattr(args, k) is not None})
    seed_everything(seed)
    train_loader, eval_loaders, info = get_nb201_loaders(
        setting, per_process_batch(int(config.batch_size), world_size), device, seed, data_path,
        _split_file(args, setting), rank=rank, world_size=world_size, download=args.download)
    model = TinyNetwork(arch, args.channel, args.num_cells, info.num_classes)
    params = count_params_mb(model)
    flops = count_flops_m(model, (1, 3, info.image_size, info.image_size))
    channels_last = use_channels_last(args.channels_last, device)
    model = to_channels_last(model.to(device), channels_last)
    optimizer = build_optimizer(config, model.parameters())
    schedule = schedule_from_config(optimizer, config)
    settings = TrainSettings(total_epochs=schedule.total_epochs, limit_batches=args.limit_batches,
                             progress=not args.quiet, amp=check_amp(args.amp, device), channels_last=channels_last,
                             print_freq=args.print_freq)
    identity = {"arch": str(arch), "seed": seed, "setting": setting, "batch_size": int(config.batch_size),
                "C": args.channel, "N": args.num_cells}
    trainer = Trainer(model, train_loader, eval_loaders, optimizer, schedule, build_criterion(config), settings, files,
                      identity, logger, best_on="valid" if "valid" in eval_loaders else "test", is_main=rank == 0,
                      forward_model=training_module(model, args.compile, world_size, device), keep_best=False,
                      allow_new_settings=args.resume_with_new_settings)
    loaders = {"train": train_loader, **eval_loaders}
    images = ", ".join(f"{name} {loader.dataset_size}" for name, loader in loaders.items())
    steps = steps_per_epoch(train_loader, args.limit_batches)
    logger.log(f"{setting} seed {seed}: images {images} | {steps} steps/epoch | params {params:.3f} MB, "
               f"FLOPs {flops:.2f} M | config {config.to_dict()}")
    history = trainer.fit()
    return {
        "params": params,
        "flops": flops,
        "epochs": history,
        "best": trainer.best,
        "total_epochs": settings.total_epochs,
        "train_seconds": sum(h["train_seconds"] for h in history),
        "finished": len(history) >= settings.total_epochs,
        "config": config.to_dict(),
    }


def _refuse_development_layout(files: RunFiles) -> None:
    """A checkpoint where a development build put it is not resumed: one line says how to resume it."""
    old = development_build_checkpoint(files)
    if old.is_file() and not files.last.exists():
        raise CheckpointError(f"{old} was written by a development build of xautodl, before the one run layout; "
                              f"move it to {files.last} to resume it, or remove it to train this setting afresh")


def run(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    arch = resolve_arch(args)
    with distributed_job(select_device(args.device)) as job:
        return _train_all(args, arch, job.device, job.rank, job.world_size)


def _train_all(args: argparse.Namespace, arch, device: torch.device, rank: int, world_size: int) -> dict:
    is_main = rank == 0
    data_paths = _data_paths(args)
    index = arch_index(arch)
    save_dir = Path(args.save_dir)
    logger = RunLogger(save_dir, log_name=RunFiles.of_arch(save_dir, index).log.name, quiet=args.quiet,
                       enabled=is_main, wandb=wandb_options(args, dict(to_plain(vars(args)), arch=str(arch))))
    session_started = time.time()
    benchmark = _open_benchmark(args, logger) if is_main else None
    logger.log(f"arch {arch} (index {index}) | C={args.channel} N={args.num_cells} | device {device} | "
               f"settings {' '.join(args.datasets)} | seeds {' '.join(map(str, args.seeds))} | run dir {save_dir}")
    if cpu_reason(device):
        logger.log(cpu_reason(device))
    results = {}
    for seed in args.seeds:
        result_path = RunFiles.of_arch(save_dir, index, seed).result
        outcomes = read_record(result_path, "train-a-net")["train_a_net"]["datasets"] if result_path.exists() else {}
        for setting in args.datasets:
            if outcomes.get(setting, {}).get("finished"):
                logger.log(f"{setting} seed {seed}: already finished in {result_path}, skipped")
                continue
            started = time.time()
            outcome = train_setting(args, arch, seed, setting, data_paths[setting],
                                    RunFiles.of_arch(save_dir, index, seed, setting), logger, device, rank, world_size)
            outcomes[setting] = outcome
            record = arch_record(args, arch, index, seed, outcomes)
            if is_main:
                write_record(result_path, record)
            _report(logger, setting, seed, outcome, benchmark, arch, time.time() - started)
        results[seed] = arch_record(args, arch, index, seed, outcomes)
    for seed, result in results.items():
        bests = [f"{setting} {_best(outcome)}" for setting, outcome in result["train_a_net"]["datasets"].items()
                 if setting in args.datasets]
        logger.log(f"seed {seed}: {'; '.join(bests)}")
    result_files = ", ".join(str(RunFiles.of_arch(save_dir, index, seed).result) for seed in results)
    logger.log(f"total time {time.time() - session_started:.1f}s this session | results {result_files} | "
               f"checkpoints {RunFiles.checkpoint_folder(save_dir)} | log {logger.log_path}")
    logger.close()
    return results


def arch_record(args: argparse.Namespace, arch, index: int, seed: int, outcomes: dict[str, dict]) -> dict:
    """The run record of `arch` trained with `seed`: one entry per setting in its section, the sums over the
    settings (epochs, training seconds) in the shared keys."""
    section = {"arch": str(arch), "index": index, "channel": args.channel, "num_cells": args.num_cells,
               "datasets": outcomes}
    run = {"arch": str(arch), "index": index, "seed": seed, "C": args.channel, "N": args.num_cells}
    return new_record("train-a-net", run=run, seed=seed,
                      finished=all(outcome["finished"] for outcome in outcomes.values()),
                      epochs_done=sum(len(outcome["epochs"]) for outcome in outcomes.values()),
                      total_epochs=sum(outcome["total_epochs"] for outcome in outcomes.values()),
                      seconds=sum(outcome["train_seconds"] for outcome in outcomes.values()),
                      args=to_plain(vars(args)), section=section)


def _open_benchmark(args, logger):
    from ..bench import open_benchmark

    return open_benchmark(None, logger=logger)


def _best(outcome: dict) -> str:
    """The best accuracy of a setting's epochs on valid (on test when the setting has no valid split), as text."""
    epochs = outcome["epochs"]
    if not epochs:
        return "no epoch trained"
    key = "valid" if "valid_acc" in epochs[0] else "test"
    best = max(range(len(epochs)), key=lambda i: epochs[i][f"{key}_acc"])
    return f"best {key} accuracy {epochs[best][f'{key}_acc']:.2f}% at epoch {best + 1}"


def _report(logger, setting: str, seed: int, outcome: dict, benchmark, arch, seconds: float) -> None:
    last = outcome["epochs"][-1] if outcome["epochs"] else {}
    ours = ", ".join(f"{key} {last[key + '_acc']:.2f}%" for key in ("train", "valid", "test") if key + "_acc" in last)
    logger.log(f"{setting} seed {seed} done in {seconds:.1f}s: last epoch {ours}; {_best(outcome)}")
    if benchmark is not None:
        reference = benchmark.query(str(arch)).to_dict().get("accuracy", {}).get(setting)
        if reference:
            logger.log(f"{setting} NATS-Bench (200 epochs, mean over its seeds): " +
                       ", ".join(f"{k} {v:.2f}%" for k, v in reference.items()))


def main() -> None:
    main_guard(run)
