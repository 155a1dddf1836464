"""Command-line flags shared by every entry point (one definition, one meaning)."""
from __future__ import annotations

import argparse
import math
import os
from typing import NoReturn


# argparse's exit status for a bad command line (other user errors exit with 1, see runtime.cli).
EXIT_BAD_FLAGS = 2


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """`--help` shows every flag's default after its description, unless the description already states it or
    there is none to state (None, a switch that is off)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or action.default in (None, False, argparse.SUPPRESS)
                or "default" in text.lower()):
            return text
        return f"{text} (default: %(default)s)"


class EntryParser(argparse.ArgumentParser):
    """ArgumentParser whose flag errors are one line on stderr, like every other user error, instead of the whole
    usage text (the entry points have dozens of flags that would bury the line saying what was wrong), and whose
    `--help` shows every flag's default."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        # Under torchrun every rank parses the same command line: only global rank 0 says what was wrong.
        rank_zero = os.environ.get("RANK", "0") in ("", "0")
        self.exit(EXIT_BAD_FLAGS, f"error: {message} (see {self.prog} --help)\n" if rank_zero else None)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (batch sizes, epochs, channels)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer (1 or more), got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer (1 or more), got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (warmup epochs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _finite_float(text: str, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (temperatures)."""
    value = _finite_float(text, "a positive number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (learning rates, weight decays)."""
    value = _finite_float(text, "a number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """--epochs, --batch_size, --limit_batches, --device, --data_path, --download, --workers, --quiet, --print_freq."""
    add = parser.add_argument
    add("--epochs", type=positive_int, default=None, help="override the config's epochs (default: the config's)")
    add("--batch_size", type=positive_int, default=None,
        help="override the config's batch size, the total over all processes (default: the config's)")
    add("--limit_batches", type=int, default=0, help="stop each epoch after N steps (smoke runs)")
    add("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    add("--data_path", default=None, help="data folder (default: derived from $TORCH_HOME)")
    add("--download", action="store_true", help="download CIFAR with torchvision when it is missing (online only)")
    add("--workers", type=int, default=4, help="data loading workers (only imagenet-1k reads files per step)")
    add("--quiet", action="store_true", help="no progress bars; plain periodic log lines")
    add("--print_freq", type=int, default=200, help="steps between plain log lines when no progress bar shows")
    add("--resume_with_new_settings", action="store_true",
        help="continue a run whose checkpoint was trained with other optimiser settings (config values, arch LR "
             "and weight decay, tau range), with this command's; the change is recorded in its history")
    add_wandb_flags(parser)


def add_wandb_flags(parser: argparse.ArgumentParser) -> None:
    """--wandb, --wandb_project, --wandb_entity: log to Weights & Biases beside TensorBoard (`runtime.wandb_log`).
    wandb's own variables apply too (WANDB_MODE=offline, WANDB_DIR, WANDB_API_KEY, ...)."""
    add = parser.add_argument
    add("--wandb", action="store_true",
        help="also log to Weights & Biases (pip install 'xautodl[wandb]'); offline when no API key is configured "
             "or WANDB_MODE=offline, and the log's last lines give the `wandb sync` command")
    add("--wandb_project", default=None, help="wandb project (default: $WANDB_PROJECT, else xautodl)")
    add("--wandb_entity", default=None, help="wandb entity, a user or team (default: $WANDB_ENTITY, else yours)")
