"""Command line of the search entry points (`exps/NAS-Bench-201-algos/{GDAS,DARTS-V1,DARTS-V2,SETN,ENAS,
RANDOM-NAS}.py`; the last three search the NAS-Bench-201 space only).

The flags are those of the original tool's scripts plus the common ones (`xautodl.runtime.flags`). The space is
`--search_space_name` (nas-bench-201, the default, or nasnet / darts), which a `--model_config`
(`configs/search-archs/*NASNet*.config`) implies; the algorithm's registry row supplies the defaults that depend on
it (see `parse_args`).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Sequence

import torch

from ..config_utils import load_config
from ..config_utils.defaults import nasnet_supernet_config, search_config, search_spaces
from ..datasets import get_search_loader
from ..errors import ConfigError, XAutoDLError
from ..runtime import RunLogger, main_guard, select_device, seed_everything, to_plain
from ..runtime.distributed import broadcast_object, distributed_job, per_process_batch
from ..runtime.device import cpu_reason
from ..runtime.epochs import steps_per_epoch
from ..runtime.resume import seed_to_run
from ..runtime.seeding import RANDOM_SEED
from ..runtime.run_record import RunFiles
from ..runtime.wandb_log import wandb_options
from ..runtime.flags import EntryParser, add_common_flags, non_negative_float, positive_float, positive_int
from ..runtime.precision import add_speed_flags, check_amp, to_channels_last, use_channels_last
from ..spaces import SPACE_NAMES, canonical_space_name, get_space
from ..optim.optimizers import build_criterion, build_optimizer
from ..optim.schedules import schedule_from_config
from ..search.registry import build_algorithm, build_mixer, get_algorithm
from ..search.loop import SearchLoop, SearchRun
from .train_a_net import driver_command as train_a_net_command

# The datasets a search can hold in memory (imagenet-1k is read from files, for re-training only).
SEARCH_DATASETS = ("cifar10", "cifar100", "ImageNet16-120", "digits", "folder")


# Adam's betas of the architecture step (the original's; its LR and weight decay are flags).
ARCH_BETAS = (0.5, 0.999)

# Flags that size the NAS-Bench-201 supernet (the NASNet one takes its size from --model_config), with the attribute
# of the space's `build_supernet` each one sets.
NB201_SIZE_FLAGS = {"channel": "C", "num_cells": "N", "max_nodes": "max_nodes"}


def build_parser(algorithm: str) -> argparse.ArgumentParser:
    spec = get_algorithm(algorithm)
    searches_nasnet = "nasnet" in search_spaces(algorithm)
    spaces = "NAS-Bench-201 or NASNet space" if searches_nasnet else "NAS-Bench-201 space"
    parser = EntryParser(prog=f"{algorithm}.py", description=f"{algorithm} architecture search ({spaces}).")
    add = parser.add_argument
    add("--dataset", required=True, choices=SEARCH_DATASETS, help="the data searched on (required)")
    add("--search_space_name", default=None, choices=[*SPACE_NAMES, "darts", "nats-bench"],
        help="the space: nas-bench-201 (default), or nasnet (alias darts), which is also what --model_config selects")
    nas201 = get_space("nas-bench-201")  # the supernet's size flags default to its constants (in resolve_args)
    add("--max_nodes", type=positive_int, default=None, help=f"NAS-Bench-201 cell nodes (default {nas201.NUM_NODES})")
    add("--channel", type=positive_int, default=None,
        help=f"NAS-Bench-201 supernet channels (default {nas201.DEFAULT_CHANNELS})")
    add("--num_cells", type=positive_int, default=None,
        help=f"NAS-Bench-201 cells per stage (default {nas201.DEFAULT_CELLS})")
    add("--track_running_stats", type=int, choices=(0, 1), default=1,
        help="1: the search cells' BatchNorm keeps running statistics; 0: batch statistics only")
    nasnet = f"; on the NASNet space {search_config(algorithm, 'nasnet')}" if searches_nasnet else ""
    add("--config_path", default=None,
        help=f"optimisation config (default {search_config(algorithm, 'nas-bench-201')}{nasnet})")
    supernet = f"default on the NASNet space {nasnet_supernet_config(algorithm)}" if searches_nasnet else "none"
    add("--model_config", default=None, help=f"NASNet supernet config (configs/search-archs/...; {supernet})")
    if spec.tau_schedule is not None:  # DARTS mixes with softmax: it has no temperature to set
        tau_max, tau_min = spec.tau_schedule
        add("--tau_max", type=positive_float, default=tau_max, help="Gumbel-softmax temperature of the first epoch")
        add("--tau_min", type=positive_float, default=tau_min, help="temperature of the last epoch (annealed linearly)")
    add("--arch_learning_rate", type=non_negative_float, default=3e-4, help="Adam learning rate of the alphas")
    add("--arch_weight_decay", type=non_negative_float, default=1e-3, help="Adam weight decay of the alphas")
    add("--save_dir", default=None, help="run directory (default: the original tool's output path)")
    add("--rand_seed", type=int, default=RANDOM_SEED,
        help=f"{RANDOM_SEED} draws a seed (or resumes the newest unfinished run)")
    add("--arch_nas_dataset", default=None, help="NATS-Bench topology benchmark path (default: under $TORCH_HOME)")
    add("--split_file", default=None, help="search split file overriding the shipped one")
    add("--no_benchmark", action="store_true", help="do not look genotypes up in NATS-Bench")
    add_common_flags(parser)
    add_speed_flags(parser)
    return parser


def parse_args(algorithm: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The entry point's arguments with the space resolved and the defaults that depend on it filled in.

    The space is `--search_space_name`, else NASNet when `--model_config` is given, else NAS-Bench-201. Flags that
    do not apply to that space are refused (never silently ignored).
    """
    return resolve_args(algorithm, build_parser(algorithm).parse_args(argv))


def resolve_args(algorithm: str, args: argparse.Namespace) -> argparse.Namespace:
    """Parsed arguments with the space resolved and the defaults of `algorithm` filled in (see `parse_args`)."""
    space = canonical_space_name(args.search_space_name or ("nasnet" if args.model_config else "nas-bench-201"))
    args.search_space_name = space
    if space not in search_spaces(algorithm):
        raise ConfigError(f"{algorithm} searches the {' and '.join(search_spaces(algorithm))} space only, as the original "
                          f"tool does; drop --search_space_name / --model_config")
    if space == "nasnet":
        given = [f"--{flag}" for flag in NB201_SIZE_FLAGS if getattr(args, flag) is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} size(s) the NAS-Bench-201 supernet; the NASNet supernet's size "
                              f"comes from --model_config (C, N, steps, ...). Drop {', '.join(given)} or edit a copy "
                              f"of {args.model_config or nasnet_supernet_config(algorithm)}")
        args.model_config = args.model_config or nasnet_supernet_config(algorithm)
    else:
        if args.model_config:
            raise ConfigError(f"--model_config {args.model_config} describes a NASNet supernet, but the space is "
                              f"{space}; drop --search_space_name (or pass --search_space_name darts)")
        nas201 = get_space(space)
        defaults = {"channel": nas201.DEFAULT_CHANNELS, "num_cells": nas201.DEFAULT_CELLS,
                    "max_nodes": nas201.NUM_NODES}
        for flag, default in defaults.items():
            setattr(args, flag, default if getattr(args, flag) is None else getattr(args, flag))
    if args.config_path is None:
        args.config_path = search_config(algorithm, space)
    return args


def default_save_dir(algorithm: str, args: argparse.Namespace, supernet: str | None) -> Path:
    """The original tool's output folder: output/search-cell-{space}/{run name}-{dataset}-BN{bn}, the run name
    being the algorithm, with -FRC for the fixed-reduction NASNet supernet."""
    name = algorithm + ("-FRC" if supernet == "GDAS_FRC" else "")
    folder = get_space(args.search_space_name).OUTPUT_FOLDER
    return Path("output") / folder / f"{name}-{args.dataset}-BN{args.track_running_stats}"


def build_supernet(args: argparse.Namespace, model_config, num_classes: int, mixer) -> torch.nn.Module:
    """The supernet of the space the arguments chose."""
    space = get_space(args.search_space_name)
    options = ({"model_config": model_config} if model_config is not None else
               {attribute: getattr(args, flag) for flag, attribute in NB201_SIZE_FLAGS.items()})
    return space.build_supernet(mixer, num_classes, track_running_stats=bool(args.track_running_stats), **options)


def benchmark_lookup(args, space: str, logger: RunLogger):
    """A function arch string -> benchmark result, or None when unavailable or not applicable."""
    if space != "nas-bench-201" or args.no_benchmark:  # NATS-Bench covers the NAS-Bench-201 space only
        return None
    from ..bench import open_benchmark

    bench = open_benchmark(args.arch_nas_dataset, logger=logger)
    if bench is None:
        return None
    return lambda arch: bench.query(arch).to_dict()


def run(algorithm: str, argv: Sequence[str] | None = None) -> dict:
    """Parse `argv`, build everything and run (or resume) the search; returns the summary."""
    get_algorithm(algorithm)  # an unknown name stops here
    args = parse_args(algorithm, argv)
    with distributed_job(select_device(args.device)) as job:
        return _search(algorithm, args, job.device, job.rank, job.world_size)


def _search(algorithm: str, args: argparse.Namespace, device: torch.device, rank: int, world_size: int) -> dict:
    spec = get_algorithm(algorithm)
    is_main = rank == 0
    overrides = {k: getattr(args, k) for k in ("epochs", "batch_size") if getattr(args, k) is not None}
    space = args.search_space_name
    model_config = load_config(args.model_config) if args.model_config else None
    config = load_config(args.config_path, overrides=overrides)
    arch_name = None if model_config is None else str(model_config.name)
    run_dir = Path(args.save_dir) if args.save_dir else default_save_dir(algorithm, args, arch_name)
    if is_main:
        _check_writable(run_dir)
    # Every rank uses rank 0's seed: identical initial weights and identical Gumbel samples.
    choice = seed_to_run(args.rand_seed, run_dir) if is_main else None
    seed = seed_everything(broadcast_object(None if choice is None else choice.seed))
    loader, info = get_search_loader(args.dataset, per_process_batch(int(config.batch_size), world_size), device, seed,
                                     data_path=args.data_path, split_file=args.split_file, rank=rank,
                                     world_size=world_size, download=args.download)
    tau_range = (args.tau_max, args.tau_min) if spec.tau_schedule is not None else None
    mixer = build_mixer(algorithm, tau=tau_range[0] if tau_range else None, seed=seed)
    channels_last = use_channels_last(args.channels_last, device)
    model = to_channels_last(build_supernet(args, model_config, info.num_classes, mixer).to(device), channels_last)
    w_optimizer = build_optimizer(config, model.weights())
    a_optimizer = torch.optim.Adam(model.alphas(), lr=args.arch_learning_rate, betas=ARCH_BETAS,
                                   weight_decay=args.arch_weight_decay)
    algo = build_algorithm(algorithm, model, build_criterion(config), w_optimizer, a_optimizer,
                           amp=check_amp(args.amp, device), forward_model=compiled_forward(algorithm, model, args),
                           config=config)
    schedule = schedule_from_config(w_optimizer, config)

    plain_args = dict(to_plain(vars(args)), rand_seed=seed)
    shape = ({"C": int(model_config.C), "N": int(model_config.N), "steps": int(model_config.steps)} if model_config
             else {"C": args.channel, "N": args.num_cells, "max_nodes": args.max_nodes})
    settings = {"batch_size": int(config.batch_size), "track_running_stats": args.track_running_stats, **shape}
    run_info = SearchRun(run_dir, seed, space, algorithm, args.dataset, plain_args, supernet=arch_name or "default",
                         settings=settings)
    logger = RunLogger(run_dir, log_name=run_info.files.log.name, quiet=args.quiet, enabled=is_main,
                       tensorboard_dir=run_info.files.tensorboard,
                       wandb=wandb_options(args, {**plain_args, **settings, "space": space, "algorithm": algorithm}))
    benchmark = benchmark_lookup(args, space, logger) if is_main else None
    loop = SearchLoop(model, algo, loader, schedule, run_info, logger, schedule.total_epochs, tau_range, mixer=mixer,
                      limit_batches=args.limit_batches, benchmark=benchmark, progress=not args.quiet,
                      is_main=is_main, print_freq=args.print_freq, channels_last=channels_last,
                      allow_new_settings=args.resume_with_new_settings)
    if choice is not None and choice.note:
        logger.log(choice.note)
    _log_start(logger, algorithm, args, device, loader, info, model, config, run_dir, seed, channels_last)
    started = time.time()
    summary = loop.run_search()
    _log_end(logger, summary, run_info, args, time.time() - started)
    if space == "nasnet" and is_main:
        _draw_final_cells(model, run_info.files.cells, logger)
    logger.close()
    return summary


def compiled_forward(algorithm: str, model: torch.nn.Module, args: argparse.Namespace):
    """torch.compile'd forward for `--compile` with DARTS (GDAS's sampled sub-graph changes every step, so
    compiling it would recompile endlessly: it runs eagerly)."""
    if not args.compile or not get_algorithm(algorithm).compiles:
        return None
    return torch.compile(model)


def _check_writable(run_dir: Path) -> None:
    checkpoints = RunFiles.checkpoint_folder(run_dir)
    try:
        checkpoints.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise XAutoDLError(f"cannot create the run directory {run_dir}: {error.strerror}; "
                           f"pass a writable --save_dir") from None
    if not os.access(checkpoints, os.W_OK):
        raise XAutoDLError(f"the run directory {run_dir} is not writable; pass a writable --save_dir")


def _log_start(logger, algorithm, args, device, loader, info, model, config, run_dir, seed,
               channels_last: bool) -> None:
    weights = sum(p.numel() for p in model.weights())
    layout = "channels-last" if channels_last else "contiguous"
    logger.log(f"{algorithm} search on {args.dataset} | device {device} ({layout}, amp {args.amp}) | seed {seed} | "
               f"run dir {run_dir}")
    if cpu_reason(device):
        logger.log(cpu_reason(device))
    steps = steps_per_epoch(loader, args.limit_batches)
    limited = f" (--limit_batches {args.limit_batches} of {len(loader)})" if steps < len(loader) else ""
    logger.log(f"data: {loader.train.dataset_size} train / {loader.valid.dataset_size} valid images, "
               f"{info.num_classes} classes, {info.image_size}x{info.image_size}; {steps} search pairs{limited} of "
               f"batch {config.batch_size} per epoch over {loader.train.world_size} process(es)")
    logger.log(f"supernet: {weights / 1e6:.3f} M weights, alphas {[tuple(a.shape) for a in model.alphas()]}")
    tau = f" | tau {args.tau_max} -> {args.tau_min}" if get_algorithm(algorithm).tau_schedule is not None else ""
    logger.log(f"config: {config.to_dict()}{tau} | arch LR {args.arch_learning_rate} wd {args.arch_weight_decay}")


def _log_end(logger, summary: dict, run_info: SearchRun, args: argparse.Namespace, seconds: float) -> None:
    logger.log(f"final genotype: {summary['search']['final_genotype']}")
    last = summary["history"][-1] if summary["history"] else {}
    if last.get("benchmark"):
        logger.log(f"benchmark of the final genotype: {last['benchmark']}")
    best = summary["best"]
    logger.log(f"best valid accuracy {best['valid_acc']:.2f}% at epoch {best['epoch'] + 1}; {seconds:.1f}s this session")
    files = run_info.files
    logger.log(f"files: {files.summary}, {files.last}, {files.best}, TensorBoard {files.tensorboard}")
    for line in next_step_lines(summary, run_info, args):
        logger.log(line)


def next_step_lines(summary: dict, run_info: SearchRun, args: argparse.Namespace) -> list[str]:
    """What to re-train after a search: the last epoch's genotype (the one GDAS reports) and the best-valid epoch's,
    each with the file or command that trains it."""
    files, best, final = run_info.files, summary["best"], summary["search"]["final_genotype"]
    last_epoch = summary["epochs_done"]
    same = best.get("genotype") == final
    if run_info.space == "nasnet":
        command = f"bash scripts/retrain-searched-net.sh {args.dataset} gdas-searched {{}} 96 -1"
        lines = [f"to re-train the final genotype (epoch {last_epoch}, the one reported): " + command.format(files.last)]
        if not same and best["epoch"] >= 0:
            lines.append(f"the best-valid epoch {best['epoch'] + 1} holds another genotype, {best['genotype']}: "
                         + command.format(files.best))
        return lines
    lines = [f"to train the final genotype (epoch {last_epoch}, the one reported): " + train_a_net_command(final)]
    if not same and best["epoch"] >= 0:
        lines.append(f"the best-valid epoch {best['epoch'] + 1} found another genotype (in {files.best}): "
                     + train_a_net_command(best["genotype"]))
    return lines


def _draw_final_cells(model, out_dir: Path, logger: RunLogger) -> None:
    """Draw the final normal and reduction cells (PNG and PDF; DOT text when graphviz's `dot` is missing)."""
    from ..utils.drawing import draw_genotype

    try:
        files = draw_genotype(model.genotype(), out_dir)
    except XAutoDLError as error:
        files = draw_genotype(model.genotype(), out_dir, formats=("dot",))
        logger.log(f"cell drawings written as DOT text only: {error}")
    logger.log(f"cell drawings: {', '.join(str(f) for f in files)}")
    for image in (f for f in files if f.suffix == ".png"):
        logger.image(f"cells/{image.stem}", image)


def main(algorithm: str) -> None:
    """Entry point used by the thin scripts under exps/."""
    main_guard(lambda: run(algorithm))
