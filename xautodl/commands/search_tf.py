"""Command line of the TensorFlow search (`exps-tf/GDAS.py`): GDAS on the NAS-Bench-201 space, or DARTS-V1 with
`--tau_max -1 --tau_min -1` (softmax mixing), as the original tool's TensorFlow prototype offered.

The flags are the PyTorch GDAS entry point's (`xautodl.commands.search.build_parser`); those that only mean something
to PyTorch or to the NASNet space are refused when given. Data, the search loop, checkpoints, resume, the summary,
the log and TensorBoard events are the package's own; the supernet and its steps are `xautodl.tf`.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

import torch

from ..config_utils import load_config
from ..datasets import get_search_loader
from ..errors import ConfigError, XAutoDLError
from ..runtime.flags import positive_float
from ..runtime import RunLogger, main_guard, seed_everything, to_plain
from ..runtime.epochs import steps_per_epoch
from ..runtime.resume import seed_to_run
from ..runtime.wandb_log import wandb_options
from ..optim.schedules import schedule_from_config
from ..search.loop import SearchLoop, SearchRun
from ..spaces import canonical_space_name, get_space
from ..tf import require_tensorflow
from . import search

SPACE = "nas-bench-201"
# Flags of the PyTorch entry point that have no meaning here, with the value that means "not given".
PYTORCH_ONLY = {"amp": "off", "channels_last": "auto", "compile": False, "model_config": None}
DARTS_TAU = -1.0


def build_parser() -> argparse.ArgumentParser:
    """The PyTorch GDAS entry point's parser, described for TensorFlow."""
    parser = search.build_parser("GDAS")
    parser.description = ("GDAS architecture search on the NAS-Bench-201 space in TensorFlow; --tau_max -1 "
                          "--tau_min -1 runs DARTS-V1 (softmax mixing) instead.")
    for action in parser._actions:  # the one change to the shared flags: -1 also means "DARTS-V1"
        if action.dest in ("tau_max", "tau_min"):
            action.type = temperature_or_darts
            action.help += "; -1 (both): DARTS-V1"
    return parser


def temperature_or_darts(text: str) -> float:
    """argparse type: a positive temperature, or -1 (with both --tau_max and --tau_min: DARTS-V1)."""
    return DARTS_TAU if text.strip() in ("-1", "-1.0") else positive_float(text)


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, str]:
    """The arguments with the defaults of the algorithm they select filled in, and that algorithm (GDAS or
    DARTS-V1). Flags that do not apply to the TensorFlow search are refused."""
    args = build_parser().parse_args(argv)
    darts = (args.tau_max == DARTS_TAU, args.tau_min == DARTS_TAU)
    if any(darts) and not all(darts):
        raise ConfigError(f"--tau_max {args.tau_max} --tau_min {args.tau_min}: -1 selects DARTS-V1 (softmax mixing) "
                          f"only when both are -1; pass both as -1, or two positive temperatures for GDAS")
    algorithm = "DARTS-V1" if all(darts) else "GDAS"
    if not all(darts) and min(args.tau_max, args.tau_min) <= 0:
        raise ConfigError(f"--tau_max {args.tau_max} --tau_min {args.tau_min}: GDAS needs positive temperatures "
                          f"(or both -1 for DARTS-V1)")
    given = [f"--{flag}" for flag, unset in PYTORCH_ONLY.items() if getattr(args, flag) != unset]
    if args.search_space_name is not None and canonical_space_name(args.search_space_name) != SPACE:
        given.append(f"--search_space_name {args.search_space_name}")
    if given:
        raise ConfigError(f"{', '.join(given)} do(es) not apply to the TensorFlow search (NAS-Bench-201 space, "
                          f"float32, eager data on the host); drop it, or use exps/NAS-Bench-201-algos/GDAS.py")
    return search.resolve_args(algorithm, args), algorithm


def select_tf_device(name: str) -> str:
    """The TensorFlow device for `--device`: cpu, gpu / cuda (the first GPU), gpu:N / cuda:N, auto (a GPU when
    TensorFlow sees one, else the CPU)."""
    tf = require_tensorflow()
    text = str(name).strip().lower()
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:  # take GPU memory as needed, not all of it at start-up (TensorFlow's default)
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised in this process
    if text == "cpu":
        return "/CPU:0"
    if text == "auto":
        return "/GPU:0" if gpus else "/CPU:0"
    kind, _, index = text.partition(":")
    if kind not in ("gpu", "cuda") or not (index == "" or index.isdigit()):
        raise XAutoDLError(f"unknown device {name!r} for TensorFlow; use auto, cpu, gpu (or cuda), gpu:N")
    number = int(index or 0)
    if number >= len(gpus):
        raise XAutoDLError(f"device {name!r} asked for, but TensorFlow {tf.__version__} sees {len(gpus)} GPU(s); "
                           f"install a TensorFlow with GPU support (pip install 'tensorflow[and-cuda]'), check "
                           f"CUDA_VISIBLE_DEVICES, or pass --device cpu")
    return f"/GPU:{number}"


def default_save_dir(algorithm: str, args: argparse.Namespace) -> Path:
    """output/search-cell-nas-bench-201/{GDAS|DARTS-V1}-TF-{dataset}-BN{bn}: beside, never inside, the PyTorch run's."""
    return Path("output") / get_space(SPACE).OUTPUT_FOLDER / f"{algorithm}-TF-{args.dataset}-BN{args.track_running_stats}"


class TFSearchLoop(SearchLoop):
    """The one search loop over the TensorFlow adapters; the summary also names the TensorFlow version."""

    def summary(self) -> dict:
        import tensorflow as tf

        summary = super().summary()
        summary["versions"]["tensorflow"] = tf.__version__
        return summary


def run(argv: Sequence[str] | None = None) -> dict:
    """Parse `argv`, build everything and run (or resume) the TensorFlow search; returns the summary.

    Mistakes in the flags, the output folder or the data stop it before TensorFlow is imported (seconds)."""
    args, algorithm = parse_args(argv)
    overrides = {k: getattr(args, k) for k in ("epochs", "batch_size") if getattr(args, k) is not None}
    config = load_config(args.config_path, overrides=overrides)
    run_dir = Path(args.save_dir) if args.save_dir else default_save_dir(algorithm, args)
    search._check_writable(run_dir)
    choice = seed_to_run(args.rand_seed, run_dir)
    seed = seed_everything(choice.seed)
    # The data stay with PyTorch on the host (uint8, augmented batch-wise there); the steps receive each batch.
    loader, info = get_search_loader(args.dataset, int(config.batch_size), torch.device("cpu"), seed,
                                     data_path=args.data_path, split_file=args.split_file, download=args.download)
    require_tensorflow()
    return _search(algorithm, args, select_tf_device(args.device), config, run_dir, seed, loader, info, choice.note)


def _search(algorithm: str, args: argparse.Namespace, device: str, config, run_dir: Path, seed: int, loader,
            info, seed_note: str = "") -> dict:
    import tensorflow as tf

    from ..tf.nas201 import TFSupernet
    from ..tf.search import (GumbelNoise, TFSearch, TFSearchModel, TorchAdam, criterion_from_config,
                             sgd_from_config)

    gdas = algorithm == "GDAS"
    # Initialised by the PyTorch supernet's own initialisation (seeded above), copied over.
    torch_net = get_space(SPACE).build_supernet(None, info.num_classes, C=args.channel, N=args.num_cells,
                                                track_running_stats=bool(args.track_running_stats),
                                                max_nodes=args.max_nodes)
    with tf.device(device):
        net = TFSupernet(args.channel, args.num_cells, info.num_classes, max_nodes=args.max_nodes,
                         track=bool(args.track_running_stats))
        net.load_state_dict(torch_net.state_dict())
        model = TFSearchModel(net, GumbelNoise(args.tau_max, seed) if gdas else None)
        w_optimizer = sgd_from_config(config, model.weights())
        a_optimizer = TorchAdam(model.alphas(), args.arch_learning_rate, betas=search.ARCH_BETAS,
                                weight_decay=args.arch_weight_decay)
    algo = TFSearch(model, criterion_from_config(config), w_optimizer, a_optimizer, device=device)
    schedule = schedule_from_config(w_optimizer, config)

    settings = {"batch_size": int(config.batch_size), "track_running_stats": args.track_running_stats,
                "C": args.channel, "N": args.num_cells, "max_nodes": args.max_nodes}
    run_info = SearchRun(run_dir, seed, SPACE, algorithm, args.dataset, dict(to_plain(vars(args)), rand_seed=seed),
                         supernet="tensorflow", settings=settings)
    logger = RunLogger(run_dir, log_name=run_info.files.log.name, quiet=args.quiet,
                       tensorboard_dir=run_info.files.tensorboard,
                       wandb=wandb_options(args, {**run_info.args, **settings, "algorithm": algorithm}))
    if seed_note:
        logger.log(seed_note)
    benchmark = search.benchmark_lookup(args, SPACE, logger)
    tau_range = (args.tau_max, args.tau_min) if gdas else None
    loop = TFSearchLoop(model, algo, loader, schedule, run_info, logger, schedule.total_epochs, tau_range,
                        mixer=model.mixer, limit_batches=args.limit_batches, benchmark=benchmark,
                        progress=not args.quiet, print_freq=args.print_freq,
                        allow_new_settings=args.resume_with_new_settings)
    weights = sum(int(v.shape.num_elements()) for v in model.weights())
    logger.log(f"{algorithm} search (TensorFlow {tf.__version__}) on {args.dataset} | device {device} | seed {seed} | "
               f"run dir {run_dir}")
    logger.log(f"data: {loader.train.dataset_size} train / {loader.valid.dataset_size} valid images, "
               f"{info.num_classes} classes, {info.image_size}x{info.image_size}; "
               f"{steps_per_epoch(loader, args.limit_batches)} search pairs of batch {config.batch_size} per epoch")
    tau = f" | tau {args.tau_max} -> {args.tau_min}" if gdas else ""
    logger.log(f"supernet: {weights / 1e6:.3f} M weights, alphas {[tuple(a.shape) for a in model.alphas()]} | "
               f"config: {config.to_dict()}{tau} | arch LR {args.arch_learning_rate} wd {args.arch_weight_decay}")
    started = time.time()
    summary = loop.run_search()
    search._log_end(logger, summary, run_info, args, time.time() - started)
    logger.close()
    return summary


def main() -> None:
    """Entry point of exps-tf/GDAS.py."""
    main_guard(run)
