"""The one checkpoint format: a dict of plain data written atomically, loaded only with `weights_only=True`.

Writing: the state goes to a temporary file in the checkpoint's folder, is fsynced and loaded back with
`weights_only=True` (proof that it is complete and safe to read), the current file is kept as `<path>.prev`, and
the temporary file is renamed over `<path>`. A crash at any moment leaves `<path>` either the old or the new
complete file. Reading never unpickles arbitrary objects: a checkpoint from elsewhere must not be able to run code.
"""
from __future__ import annotations

import errno
import os
import pickle
import re
import secrets
import shutil
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from xautodl.errors import CheckpointError
from xautodl.runtime.serialization import (
    fsync_folder,
    give_default_mode,
    make_temporary,
    remove_stale_temporaries,
    temporary_prefix,
)
from xautodl.runtime.signals import signals_deferred

# The one checkpoint format number: 2 since the epoch skeleton. No release ever wrote another, so a file with
# another number (or none) comes from a development build and is refused with one line (`OutdatedCheckpointError`).
CHECKPOINT_SCHEMA = 2
SCHEMA_KEY = "schema_version"
PREVIOUS_SUFFIX = ".prev"
DAMAGED_SUFFIX = ".damaged"
# How torch's weights-only unpickler names a class or function it will not import: "Unsupported global: GLOBAL
# x.Y was not an allowed global" for an unlisted class, "Trying to load unsupported GLOBAL posix.system whose module
# posix is blocked" for a blocked module (torch 2.6+).
_REFUSED_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)")

_LEAF_TYPES = (type(None), bool, int, float, str, torch.Tensor, torch.dtype, torch.device)
_CONTAINER_TYPES = (dict, OrderedDict, list, tuple, torch.Size)


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that can only be read by unpickling arbitrary objects, which could run code."""


class ForeignCheckpointError(CheckpointError):
    """A readable checkpoint of another kind of run or another run's settings: its `.prev` is that run's too, so it
    is never a reason to fall back to it."""


class OutdatedCheckpointError(CheckpointError):
    """A checkpoint of another checkpoint format (an earlier development build of xautodl); its `.prev` is too."""


# Problems of a whole run's files rather than of one file: `.prev` has them too, so they stop a resume at once.
FINAL_CHECKPOINT_ERRORS = (UnsafeCheckpointError, ForeignCheckpointError, OutdatedCheckpointError)


class SupportsLog(Protocol):
    def log(self, message: str) -> None: ...


def previous_path(path: str | os.PathLike) -> Path:
    """Where the checkpoint written before `path`'s current one is kept."""
    path = Path(path)
    return path.with_name(path.name + PREVIOUS_SUFFIX)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` (plain data only) to `path` atomically, keeping the previous file as `<path>.prev`.

    Records `schema_version` (CHECKPOINT_SCHEMA). Non-plain values (objects, numpy arrays, paths) raise TypeError naming
    where they are: convert them first (`to_plain`, `state_dict()`, `torch.from_numpy`). A folder that cannot be
    written raises CheckpointError. Returns the path written.
    """
    if not isinstance(state, dict):
        raise TypeError(f"a checkpoint state must be a dict, got {type(state).__name__}")
    payload = {SCHEMA_KEY: CHECKPOINT_SCHEMA, **{key: value for key, value in state.items() if key != SCHEMA_KEY}}
    _check_plain(payload, "state")
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target.parent, (target.name, previous_path(target).name))
        with signals_deferred():  # a SIGTERM during the write lands after it: no temporary is left behind
            tmp = _write_verified_temporary(target, payload)
            try:
                if target.exists():
                    _keep_as_previous(target)
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            fsync_folder(target.parent)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise CheckpointError(
                f"cannot write checkpoint {target}: no space left on the device ({_free_space(target.parent)} free "
                f"in {target.parent}; the checkpoint needs about {_size(_tensor_bytes(payload))}); free "
                "some space and re-run: the previous checkpoint is kept"
            ) from None
        raise CheckpointError(
            f"cannot write checkpoint {target}: {err.strerror or err}; check that {target.parent} is writable "
            "and the disk is not full"
        ) from None
    return target


def _free_space(folder: Path) -> str:
    try:
        return _size(shutil.disk_usage(folder).free)
    except OSError:
        return "unknown space"


def _size(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{max(1, round(count / 2**10))} KiB"


def _tensor_bytes(value: Any) -> int:
    """Bytes of the tensors in a plain-data state (what dominates its file size)."""
    if isinstance(value, torch.Tensor):
        return value.nelement() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(item) for item in value)
    return 0


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint`, with `torch.load(weights_only=True)` only.

    Raises CheckpointError when the file is missing, truncated or corrupt, OutdatedCheckpointError when it has
    another `schema_version` (or none), and UnsafeCheckpointError when reading it would need arbitrary unpickling.
    """
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"checkpoint {file} not found")
    try:
        state = torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        needed = _needed_global(str(err))
        if needed is not None:
            raise UnsafeCheckpointError(
                f"refusing to load checkpoint {file}: it stores Python objects ({needed}) that can only be restored "
                "by unpickling arbitrary code (for example a checkpoint of the original tool or from another program). "
                "xautodl loads checkpoints with torch.load(weights_only=True) only, because unpickling a file from "
                "elsewhere can run any code. Use a checkpoint written by this version of xautodl."
            ) from None
        raise _corrupt(file, "damaged pickle data") from None
    except Exception as err:  # torch reports truncation as RuntimeError, EOFError, OSError, ... by format
        first_line = next(iter(str(err).splitlines()), "")
        raise _corrupt(file, f"{type(err).__name__}: {first_line}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {file} holds a {type(state).__name__}, expected a dict of run state")
    version = state.get(SCHEMA_KEY)
    if version != CHECKPOINT_SCHEMA:
        written = "no checkpoint schema" if version is None else f"checkpoint schema {version!r}"
        raise OutdatedCheckpointError(
            f"checkpoint {file} has {written}, not {CHECKPOINT_SCHEMA}: it was written by another development build "
            f"of xautodl, which this one does not read; delete or move its run folder to start the run again"
        )
    return state


def load_resume_checkpoint(path: str | os.PathLike, logger: SupportsLog | None = None,
                           check: Callable[[Path, dict], None] | None = None) -> dict[str, Any] | None:
    """The state to resume from: `path`, else `<path>.prev` when `path` is missing or damaged, else None.

    `check(file, state)` judges a loaded state: a CheckpointError from it makes the file unusable like damaged
    bytes do (e.g. fields this tool never writes); the FINAL_CHECKPOINT_ERRORS stop at once. None means neither
    file exists, so the run starts from scratch. When files exist but none loads this raises CheckpointError:
    starting over would overwrite earlier results without anyone noticing.
    """
    main, previous = Path(path), previous_path(path)
    if not main.exists() and not previous.exists():
        return None
    main_problem = "it does not exist"
    if main.exists():
        try:
            return _load_checked(main, check)
        except FINAL_CHECKPOINT_ERRORS:
            raise
        except CheckpointError as err:
            main_problem = str(err)
    if not previous.exists():
        raise CheckpointError(
            f"cannot resume: {main_problem}, and there is no previous checkpoint {previous}. Delete or move "
            f"{main} to start this run from scratch."
        )
    try:
        state = _load_checked(previous, check)
    except FINAL_CHECKPOINT_ERRORS:
        raise
    except CheckpointError as err:
        raise CheckpointError(
            f"cannot resume from {main} ({main_problem}) nor from {previous} ({err}). Delete or move both to start "
            "this run from scratch."
        ) from None
    _warn(f"warning: checkpoint {main} is unusable ({main_problem}); resuming from the previous one, {previous}"
          f"{_set_aside(main)}", logger)
    return state


def _load_checked(file: Path, check: Callable[[Path, dict], None] | None) -> dict[str, Any]:
    state = load_checkpoint(file)
    if check is not None:
        check(file, state)
    return state


def _set_aside(damaged: Path) -> str:
    """Move a damaged last checkpoint aside, so that the next save does not keep it as `.prev` in place of the
    good one; returns what to add to the warning."""
    if not damaged.exists():
        return ""
    kept = damaged.with_name(damaged.name + DAMAGED_SUFFIX)
    try:
        os.replace(damaged, kept)
    except FileNotFoundError:
        return ""  # another process of a distributed run moved it first
    return f" (the damaged file is kept as {kept})"


def _warn(message: str, logger: SupportsLog | None) -> None:
    if logger is not None:
        logger.log(message)
    else:
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _needed_global(message: str) -> str | None:
    """The object a weights-only load refused, or None when the refusal came from damaged bytes instead."""
    match = _REFUSED_GLOBAL.search(message)
    if match:
        return match.group(1)
    return "a pickled object" if "unrecognized function" in message or "Unsupported class" in message else None


def _corrupt(file: Path, detail: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {file} is truncated or corrupt ({detail})")


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, _LEAF_TYPES):
        return
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"checkpoint key {key!r} in {where} is a {type(key).__name__}; use str or int keys")
            _check_plain(item, f"{where}[{key!r}]")
        return
    if type(value) in (list, tuple, torch.Size):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
        return
    raise TypeError(
        f"checkpoint value {where} is a {type(value).__name__}; a checkpoint holds only tensors, numbers, strings, "
        "lists, dicts and None (convert with to_plain(), .state_dict() or torch.as_tensor())"
    )


def _write_verified_temporary(target: Path, payload: dict[str, Any]) -> Path:
    fd, tmp = make_temporary(target)
    try:
        give_default_mode(fd)
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        # mmap keeps the read-back cheap: the unpickler checks every record, tensor bytes stay on disk.
        torch.load(tmp, map_location="cpu", weights_only=True, mmap=True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _keep_as_previous(target: Path) -> None:
    """Make `<target>.prev` a copy of `target` without a moment where `target` is missing."""
    previous = previous_path(target)
    staging = target.with_name(f"{temporary_prefix(previous)}{secrets.token_hex(4)}.tmp")
    try:
        os.link(target, staging)
    except OSError:
        # Filesystems without hard links get a copy; slower, same guarantee.
        shutil.copyfile(target, staging)
    os.replace(staging, previous)
    # rename() does nothing when both names already link the same file (`.prev` kept by a write that was killed
    # right after), which would leave the staging name behind.
    staging.unlink(missing_ok=True)
