"""Plain data: what checkpoints and JSON summaries may hold, and atomic writes of JSON files."""
from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import math
import os
import re
import socket
import tempfile
from pathlib import Path, PurePath
from typing import Any

from xautodl.errors import XAutoDLError
from xautodl.runtime.signals import signals_deferred


def to_plain(obj: Any) -> Any:
    """JSON-safe copy of `obj`: dicts (keys as strings), lists, strings, numbers, bools and None.

    Converts argparse Namespaces, dataclasses and objects with a `to_dict()` method to dicts, paths to strings,
    tuples and sets to lists, tensors and numpy values to numbers or nested lists, enums to their values and
    torch dtypes / devices to their names. Anything else raises TypeError: silently storing `repr()` text would
    make a result file that cannot be read back.
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, dict):
        return {_plain_key(key): to_plain(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(value) for value in obj]
    if isinstance(obj, (set, frozenset)):
        return [to_plain(value) for value in sorted(obj, key=repr)]
    if isinstance(obj, argparse.Namespace):
        return to_plain(vars(obj))
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return to_plain(obj.value)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_plain(dataclasses.asdict(obj))
    if callable(getattr(obj, "to_dict", None)):
        return to_plain(obj.to_dict())
    # Array-likes: torch tensors and numpy arrays / scalars both offer tolist().
    if callable(getattr(obj, "tolist", None)):
        return to_plain(obj.tolist())
    if type(obj).__module__ == "torch" and type(obj).__name__ in ("dtype", "device"):
        return str(obj)
    raise TypeError(f"cannot convert {type(obj).__name__} ({obj!r}) to plain data")


def _plain_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (bool, int, float)) or key is None:
        return json.dumps(key)
    if isinstance(key, PurePath):
        return str(key)
    raise TypeError(f"cannot use {type(key).__name__} ({key!r}) as a JSON key")


def _json_safe_floats(obj: Any) -> Any:
    """NaN and infinities become None: strict JSON has no spelling for them."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {key: _json_safe_floats(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_json_safe_floats(value) for value in obj]
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write `to_plain(obj)` as indented JSON to `path` so that readers see the old or the new file, never half.

    Non-finite floats are written as null. The parent folder is created. Returns the path written.
    """
    target = Path(path)
    text = json.dumps(_json_safe_floats(to_plain(obj)), indent=2, sort_keys=False) + "\n"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(target, text.encode("utf-8"))
    except OSError as err:
        raise XAutoDLError(
            f"cannot write {target}: {err.strerror or err}; check that the folder {target.parent} exists and is "
            "writable, or choose another output folder"
        ) from err
    return target


# A temporary file names its writer: `.<target>~<host>~<pid>~<random>.tmp`, so that stale ones (their writer died)
# can be told from one a live writer is filling.
_TEMPORARY = re.compile(r"\.(?P<target>.+)~(?P<host>[^~/]*)~(?P<pid>\d+)~[^~/]+\.tmp")


def _host() -> str:
    return re.sub(r"[~/\s]", "_", socket.gethostname()) or "host"


def temporary_prefix(target: Path) -> str:
    """The name start of this process's temporary files for `target` (see `remove_stale_temporaries`)."""
    return f".{target.name}~{_host()}~{os.getpid()}~"


def make_temporary(target: Path) -> tuple[int, Path]:
    """A new temporary file beside `target`, named after this process: (open fd, path)."""
    fd, name = tempfile.mkstemp(prefix=temporary_prefix(target), suffix=".tmp", dir=target.parent)
    return fd, Path(name)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale_temporaries(folder: Path, targets: tuple[str, ...] | None = None) -> list[Path]:
    """Delete the temporary files in `folder` (of the file names `targets`, default all) whose writer is dead: a
    process of this host that no longer exists. A live writer's file, or another host's, is never touched.
    Returns the files removed."""
    removed = []
    for path in Path(folder).glob(".*~*~*~*.tmp"):
        match = _TEMPORARY.fullmatch(path.name)
        if match is None or (targets is not None and match["target"] not in targets):
            continue
        if match["host"] == _host() and not _alive(int(match["pid"])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def replace_atomically(target: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `target`, fsync it, then rename it over `target`."""
    with signals_deferred():
        _replace_atomically(target, data)


def _replace_atomically(target: Path, data: bytes) -> None:
    fd, tmp_name = make_temporary(target)
    try:
        give_default_mode(fd)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_folder(target.parent)


def give_default_mode(fd: int) -> None:
    """Give a temporary file (created 0600 by mkstemp) the mode a plainly created file would get: 0666 less umask."""
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)
    except (AttributeError, OSError):
        pass  # no fchmod (Windows) or a filesystem without modes: the file stays private, which is harmless


def fsync_folder(folder: Path) -> None:
    """Make a rename inside `folder` durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
