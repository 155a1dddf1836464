"""Train a NASNet-space evaluation network: a published genotype or a searched one (`exps/basic/basic-main.py`).

The arch config (`configs/archs/NAS-{CIFAR,IMAGENET}-*.config`) gives the network (init channels, cells per stage,
stem, auxiliary head, drop-path) and a published genotype name, or none (the `-none` configs): then `--genotype`
names it (a published name, a JSON file, a search or training checkpoint of this tool, or the printed genotype).
The optimisation config (`configs/opts/NAS-*.config`) gives warmup + cosine, nesterov SGD, the criterion (label
smoothing for ImageNet) and the auxiliary loss weight. Training evaluates on the test set every epoch, keeps the last
and the best checkpoint, and resumes when the same command runs again (a finished run is not trained again).
Results go to `{save_dir}/seed-{seed}-summary.json`.

Started by torchrun with several processes, it trains with DistributedDataParallel: every process reads its share
of the data, `--batch_size` is the total over the processes, and only rank 0 logs and writes files.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..config_utils import Config, load_config
from ..config_utils.defaults import TRAINING_CONFIGS
from ..datasets import get_train_test_loaders
from ..errors import ArchError, CheckpointError, ConfigError
from ..runtime import RunLogger, load_checkpoint, main_guard, select_device, seed_everything, to_plain
from ..runtime.distributed import broadcast_object, distributed_job
from ..runtime.distributed import per_process_batch
from ..runtime.flags import EntryParser, add_common_flags, non_negative_int
from ..runtime.resume import seed_to_run
from ..runtime.seeding import RANDOM_SEED
from ..runtime.wandb_log import wandb_options
from ..runtime.precision import add_speed_flags, check_amp, to_channels_last, use_channels_last
from ..spaces.genotypes import PUBLISHED_GENOTYPES, NASNetGenotype, parse_genotype
from ..spaces.nasnet import FRC_GROUPS, build_inference_net, network_channels
from ..utils.flops import count_flops_m, count_params_mb
from ..train.loop import Trainer, TrainSettings, training_module
from ..optim.optimizers import build_criterion, build_optimizer
from ..optim.schedules import schedule_from_config
from ..runtime.device import cpu_reason
from ..runtime.epochs import steps_per_epoch
from ..runtime.run_record import RunFiles, new_record, read_record, write_record
from .train_a_net import driver_command as train_a_net_command

DATASETS = ("cifar10", "cifar100", "imagenet-1k", "folder")
# Which evaluation net (the arch config's `dataset` entry) suits each dataset; user folders hold small images.
NET_KINDS = {"cifar10": "cifar", "cifar100": "cifar", "folder": "cifar", "imagenet-1k": "imagenet"}
DEFAULT_BATCH_SIZE = 96  # when the optimisation config names none
CIFAR_CUTOUT = 16
NB201_SPACE = "nas-bench-201"


def build_parser() -> argparse.ArgumentParser:
    parser = EntryParser(
        prog="basic-main.py", description="Train a NASNet-space network (published or searched genotype).")
    add = parser.add_argument
    add("--dataset", required=True, choices=DATASETS, help="the data trained on (required)")
    add("--model_config", required=True, help="configs/archs/NAS-{CIFAR,IMAGENET}-<genotype or none>.config")
    add("--optim_config", default=None,
        help="configs/opts/NAS-CIFAR.config or NAS-IMAGENET.config (default: the one matching the arch config)")
    add("--genotype", "--extra_model_path", dest="genotype", default=None, type=genotype_argument,
        help="genotype for a 'none' arch config (or replacing the config's): a published name "
             f"({', '.join(PUBLISHED_GENOTYPES)}), a genotype JSON file, a search or training checkpoint of this "
             "tool, a search summary JSON, or the printed genotype")
    add("--save_dir", default=None, help="run folder (default: output/nas-infer/{dataset}-{genotype}-{batch})")
    add("--rand_seed", type=int, default=RANDOM_SEED,
        help=f"{RANDOM_SEED}: resume the newest unfinished run in --save_dir, else draw a seed")
    add("--warmup", type=non_negative_int, default=None, help="override the optimisation config's warmup epochs")
    add("--cutout_length", type=int, default=None,
        help=f"cutout side (default {CIFAR_CUTOUT} for CIFAR, none otherwise; <= 0 turns it off)")
    add_common_flags(parser)
    add_speed_flags(parser)
    return parser


def genotype_argument(text: str) -> str:
    """argparse type of --genotype: the text as given, but an existing file must be a checkpoint or UTF-8 text
    (a binary file would otherwise fail deep inside the genotype parser)."""
    path = Path(text).expanduser()
    if "\n" in text or not path.is_file():
        return text
    try:
        if not _is_torch_file(path):
            path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise argparse.ArgumentTypeError(
            f"{text} is a binary file, not a genotype (byte {error.start} is not UTF-8 text); give a published name, "
            "a genotype JSON or text file, or a checkpoint of this tool") from None
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot read {text}: {error.strerror or error}") from None
    return text


# ----------------------------------------------------------------------------------------------------- genotype
@dataclass(frozen=True)
class GenotypeChoice:
    """The genotype to train, a short name for paths and logs, where it came from, and a remark for the log."""

    genotype: NASNetGenotype
    name: str
    source: str
    note: str = ""


def resolve_genotype(requested: str | None, config_genotype: str | None, model_config_path: str) -> GenotypeChoice:
    """The genotype of `--genotype` when given, else the arch config's; ConfigError when neither names one."""
    source = requested if requested is not None else config_genotype
    if source is None:
        raise ConfigError(
            f"{model_config_path} names no genotype (a 'none' config); pass --genotype with a published name "
            f"({', '.join(PUBLISHED_GENOTYPES)}), a genotype JSON file, a search checkpoint "
            "(output/search-cell-darts/.../checkpoint/seed-*-basic.pth) or the printed genotype")
    text = str(source).strip()
    published = {name.lower(): name for name in PUBLISHED_GENOTYPES}
    if text.lower() in published:
        name = published[text.lower()]
        return GenotypeChoice(parse_genotype(name), name, "published")
    path = Path(text).expanduser()
    if "\n" not in text and path.is_file():
        genotype, note = genotype_from_file(path)
        return GenotypeChoice(genotype, _file_run_name(path), str(path), note)
    return GenotypeChoice(parse_genotype(text), "custom", "text")


def _file_run_name(path: Path) -> str:
    """A run's checkpoint (<run>/checkpoint/seed-1-basic.pth) is named after its run folder, other files by stem."""
    run_dir = RunFiles.run_dir_of_checkpoint(path)
    return path.stem if run_dir is None else run_dir.name


def genotype_from_file(path: Path) -> tuple[NASNetGenotype, str]:
    """The genotype held by a checkpoint, a run record (summary) / genotype JSON file or a text file; plus a
    remark."""
    if _is_torch_file(path):
        state = load_checkpoint(path)
        entry = state.get("genotype")  # a search's (dict form) or basic-main's (printed) checkpoint
        if not isinstance(entry, (Mapping, str)):
            raise CheckpointError(
                f"{path} holds no genotype: expected a search checkpoint of this tool "
                "(output/search-cell-darts/.../checkpoint/seed-*-basic.pth) or a checkpoint written by basic-main")
        return _nasnet_genotype(entry, path), _search_progress_note(state, path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return parse_genotype(path), ""
    if isinstance(data, Mapping) and "command" in data:
        return _nasnet_genotype(_record_genotype(path, data["command"]), path), ""
    if isinstance(data, Mapping):
        return _nasnet_genotype(data, path), ""
    return parse_genotype(path), ""


def _is_torch_file(path: Path) -> bool:
    """torch.save writes a zip archive (or, in the legacy format, a pickle); genotype files are text."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    return head == b"PK\x03\x04" or head[:1] == b"\x80"


def _record_genotype(path: Path, command: str) -> Mapping[str, Any]:
    """The genotype of a run record: a search's final genotype, or the one basic-main trained."""
    if command == "search":
        return read_record(path, command)["search"]["final_genotype_dict"]
    if command == "basic-main":
        return read_record(path, command)["basic_main"]["genotype"]
    raise ArchError(f"{path} is a {command} record, which holds no NASNet genotype; give a search's or basic-main's "
                    f"summary, checkpoint or genotype")


def _nasnet_genotype(entry: Mapping[str, Any] | str, origin: Path) -> NASNetGenotype:
    """The NASNet genotype of a dict or printed form found in `origin`; NB201 cells are refused with a pointer."""
    if isinstance(entry, Mapping) and entry.get("space") == NB201_SPACE:
        arch = entry.get("arch", "<arch string>")
        raise ArchError(
            f"{origin} comes from the NAS-Bench-201 space (its cell is {arch}), but basic-main trains NASNet-space "
            f"(DARTS) genotypes. Train that cell the NAS-Bench-201 way instead: {train_a_net_command(arch)}")
    try:
        return parse_genotype(entry)
    except ArchError as error:
        raise ArchError(f"{origin}: {error}") from None


def _search_progress_note(state: Mapping[str, Any], path: Path) -> str:
    if state.get("kind") != "search" or state.get("finished", True):
        return ""
    return (f"warning: the search in {path} stopped after epoch {int(state['epoch']) + 1} of "
            f"{state.get('total_epochs', '?')}; its genotype at that point is used")


# ------------------------------------------------------------------------------------------------------ network
def net_kind(model_config: Config, dataset: str) -> str:
    """The evaluation net ("cifar" or "imagenet") of the arch config, which must suit `dataset`."""
    expected = NET_KINDS[dataset]
    kind = str(model_config.get("dataset") or expected)
    if kind != expected:
        base = "IMAGENET" if expected == "imagenet" else "CIFAR"
        raise ConfigError(
            f"{model_config.source} describes the {kind} evaluation net, which does not suit {dataset}; use a "
            f"configs/archs/NAS-{base}-*.config arch config")
    return kind


def build_network(model_config: Config, kind: str, choice: GenotypeChoice, num_classes: int,
                  auxiliary: bool) -> nn.Module:
    channels = network_channels(int(model_config.ichannel), choice.genotype)
    return build_inference_net(choice.genotype, C=channels, N=int(model_config.layers), dataset=kind,
                               stem_multiplier=int(model_config.get("stem_multi") or 3), num_classes=num_classes,
                               auxiliary=auxiliary)


# ------------------------------------------------------------------------------------------------------- run
def cutout_length(args: argparse.Namespace) -> int:
    if args.cutout_length is None:
        return CIFAR_CUTOUT if args.dataset in ("cifar10", "cifar100") else 0
    return max(args.cutout_length, 0)


def run(argv: Sequence[str] | None = None) -> dict:
    """Parse `argv`, then train (or resume, or find finished) the run; returns its summary."""
    args = build_parser().parse_args(argv)
    with distributed_job(select_device(args.device)) as job:
        return train(args, job.device, job.rank, job.world_size)


def load_configs(args: argparse.Namespace) -> tuple[Config, Config, str]:
    """(arch config, optimisation config with the --epochs / --warmup overrides, net kind "cifar" / "imagenet")."""
    model_config = load_config(args.model_config)
    kind = net_kind(model_config, args.dataset)
    overrides = {key: getattr(args, key) for key in ("epochs", "warmup") if getattr(args, key) is not None}
    optim_config = load_config(args.optim_config or TRAINING_CONFIGS[kind], overrides=overrides)
    if str(optim_config.get("scheduler") or "cos") != "cos":
        raise ConfigError(f"{optim_config.source}: scheduler {optim_config.scheduler!r} is not supported; use 'cos' "
                          "(warmup + cosine)")
    return model_config, optim_config, kind


def training_settings(args: argparse.Namespace, model_config: Config, optim_config: Config,
                      auxiliary: bool, channels_last: bool) -> TrainSettings:
    """Epochs (warmup included), auxiliary loss weight, drop-path, gradient clipping and the smoke-run limit."""
    return TrainSettings(
        total_epochs=int(optim_config.epochs) + int(optim_config.get("warmup") or 0),
        aux_weight=float(optim_config.get("auxiliary") or 0.0) if auxiliary else 0.0,
        drop_path_prob=float(model_config.get("drop_path_prob") or 0.0),
        grad_clip=float(optim_config.get("grad_clip") or 0.0),
        limit_batches=args.limit_batches, progress=not args.quiet, print_freq=args.print_freq,
        amp=args.amp, channels_last=channels_last)


def train(args: argparse.Namespace, device: torch.device, rank: int, world_size: int) -> dict:
    """Train the run `args` describes on `device` as process `rank` of `world_size`; returns the summary."""
    model_config, optim_config, kind = load_configs(args)
    choice = resolve_genotype(args.genotype, model_config.get("genotype"), args.model_config)
    batch_size = args.batch_size or int(optim_config.get("batch_size") or DEFAULT_BATCH_SIZE)
    save_dir = Path(args.save_dir or f"output/nas-infer/{args.dataset}-{choice.name}-{batch_size}")
    is_main = rank == 0
    # Every process runs seed_to_run (so a bad seed fails everywhere alike), and all take rank 0's answer.
    seed = seed_everything(broadcast_object(seed_to_run(args.rand_seed, save_dir).seed))
    files = RunFiles.of_seed(save_dir, seed)
    logger = RunLogger(save_dir, log_name=files.log.name, enabled=is_main, quiet=args.quiet,
                       tensorboard_dir=files.tensorboard,
                       wandb=wandb_options(args, dict(to_plain(vars(args)), rand_seed=seed, genotype=choice.name)))

    train_loader, test_loader, info = get_train_test_loaders(
        args.dataset, per_process_batch(batch_size, world_size), device, seed, cutout=cutout_length(args),
        data_path=args.data_path, workers=args.workers, rank=rank, world_size=world_size, download=args.download)
    auxiliary = bool(model_config.get("auxiliary")) and float(optim_config.get("auxiliary") or 0.0) > 0
    model = build_network(model_config, kind, choice, info.num_classes, auxiliary)
    # The printed genotype identifies the run in its checkpoints (and reads back with parse_genotype).
    meta = {"dataset": args.dataset, "seed": seed, "genotype": str(choice.genotype),
            "channels": network_channels(int(model_config.ichannel), choice.genotype),
            "layers": int(model_config.layers), "batch_size": batch_size}
    network = {"params": count_params_mb(model), "auxiliary": auxiliary, "input_size": info.image_size,
               "flops": count_flops_m(model, (1, 3, info.image_size, info.image_size)) if is_main else None}
    check_amp(args.amp, device)
    channels_last = use_channels_last(args.channels_last, device)
    model = to_channels_last(model.to(device), channels_last)
    ddp_model = training_module(model, args.compile, world_size, device)
    optimizer = build_optimizer(optim_config, model.parameters())
    schedule = schedule_from_config(optimizer, optim_config)
    settings = training_settings(args, model_config, optim_config, auxiliary, channels_last)
    trainer = Trainer(model, train_loader, {"test": test_loader}, optimizer, schedule, build_criterion(optim_config),
                      settings, files, meta, logger, best_on="test", is_main=is_main, forward_model=ddp_model,
                      allow_new_settings=args.resume_with_new_settings)

    logger.log(f"basic-main on {args.dataset} | device {device} x {world_size} process(es) | seed {seed} | "
               f"run dir {save_dir}")
    if cpu_reason(device):
        logger.log(cpu_reason(device))
    logger.log(f"data: {train_loader.dataset_size} train / {test_loader.dataset_size} test images")
    _log_network(logger, choice, model_config, meta, network, info.num_classes)
    steps = steps_per_epoch(train_loader, args.limit_batches)
    logger.log(f"training: {settings.total_epochs} epochs ({schedule.warmup} warmup) | batch {batch_size} in total, "
               f"{steps} steps/epoch per process | aux weight {settings.aux_weight} | drop-path "
               f"{settings.drop_path_prob} | cutout {cutout_length(args)} | {optim_config.to_dict()}")
    started = time.time()
    history = trainer.fit()
    section = {
        "dataset": args.dataset,
        "genotype_name": choice.name,
        "genotype_source": choice.source,
        "genotype": choice.genotype.to_dict(),
        "genotype_text": str(choice.genotype),
        "channels": meta["channels"],
        "layers": meta["layers"],
        **network,
        "aux_weight": settings.aux_weight,
        "drop_path_prob": settings.drop_path_prob,
        "batch_size": batch_size,
        "world_size": world_size,
        "seconds_this_session": time.time() - started,
        "checkpoints": {"last": str(files.last), "best": str(files.best)},
        "model_config": model_config.to_dict(),
        "optim_config": optim_config.to_dict(),
    }
    summary = new_record("basic-main", run=meta, seed=seed, finished=len(history) >= settings.total_epochs,
                         epochs_done=len(history), total_epochs=settings.total_epochs,
                         seconds=sum(entry["train_seconds"] for entry in history), args=to_plain(vars(args)),
                         section=section, history=history, best=trainer.best)
    if is_main:
        write_record(files.summary, summary)
    _log_end(logger, summary, trainer.start_epoch, files.summary)
    logger.close()
    return summary


def _log_network(logger: RunLogger, choice: GenotypeChoice, model_config: Config, meta: dict, network: dict,
                 num_classes: int) -> None:
    logger.log(f"genotype {choice.name} ({choice.source}):\n{choice.genotype}")
    if choice.note:
        logger.log(choice.note)
    if meta["channels"] != int(model_config.ichannel):
        logger.log(f"init channels {model_config.ichannel} -> {meta['channels']}: the fixed GDAS-FRC reduction cell "
                   f"needs 2C to be a multiple of {FRC_GROUPS} (its grouped convolutions)")
    side = network["input_size"]
    logger.log(f"network: C={meta['channels']} N={meta['layers']} | params {network['params']:.3f} M (auxiliary head "
               f"excluded) | FLOPs {network['flops'] or 0:.2f} M at {side}x{side} | {num_classes} classes")


def _log_end(logger: RunLogger, summary: dict, start_epoch: int, summary_path: Path) -> None:
    if start_epoch >= summary["total_epochs"]:
        logger.log(f"the run had already finished its {summary['total_epochs']} epochs; nothing trained")
    last = summary["history"][-1] if summary["history"] else {}
    section = summary["basic_main"]
    if last:
        logger.log(f"last epoch: test accuracy {last['test_acc']:.2f}% | best {summary['best']['acc']:.2f}% at epoch "
                   f"{summary['best']['epoch'] + 1} | {summary['seconds']:.1f}s of training in all, "
                   f"{section['seconds_this_session']:.1f}s this session")
    logger.log(f"files: summary {summary_path} | checkpoints {section['checkpoints']['last']}, "
               f"{section['checkpoints']['best']} | log {logger.log_path}")


def main() -> None:
    main_guard(run)
