"""One process per run: an OS file lock beside the run's last checkpoint.

`hold_run_lock(path)` takes an exclusive `fcntl.flock` on `path` and writes the holder's PID and host into it.
The kernel drops the lock when the holder's process ends, however it ends (SIGKILL included), so a lock is never
stale; a second process asking for it is refused at once with a line naming the folder and the holder's PID.
Where `fcntl` is missing (Windows) runs are not locked.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

from xautodl.errors import XAutoDLError
from xautodl.runtime.distributed import broadcast_object
from xautodl.runtime.serialization import remove_stale_temporaries

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_SUFFIX = ".lock"
# Locks this process holds, by path: a lock is taken once per process (a second flock on a new descriptor of the
# same file would conflict with our own).
_HELD: dict[Path, int] = {}


class RunBusyError(XAutoDLError):
    """Another live process holds the run's lock."""


def lock_path(last_checkpoint: Path) -> Path:
    """The lock file of the run whose last checkpoint is `last_checkpoint`."""
    return last_checkpoint.with_name(last_checkpoint.name + LOCK_SUFFIX)


def hold_run_lock(path: Path, run_dir: Path) -> Path:
    """Lock the run (file `path`, in `run_dir`) for this process, then remove the temporary files that dead writers
    left in its folders. RunBusyError when another process holds it. Returns `path`."""
    path = Path(path).resolve()
    if fcntl is None or path in _HELD:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").split()
        os.close(fd)
        pid, host = (holder + ["?", "?"])[:2]
        raise RunBusyError(f"{run_dir} is in use: another process (PID {pid} on {host}) is running this run there "
                           f"(it holds {path}); wait for it to end or stop it, or pass another --save_dir or seed"
                           ) from None
    except OSError:
        os.close(fd)  # a filesystem without locks: run unlocked rather than not at all
        return path
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    _HELD[path] = fd
    for folder in {path.parent, Path(run_dir)}:
        remove_stale_temporaries(folder)
    return path


def lock_run(last_checkpoint: Path, run_dir: Path, is_main: bool) -> Path | None:
    """The main process locks the run whose last checkpoint is `last_checkpoint` (returns the lock file, None on
    the other processes); every process stops with the same RunBusyError when another process holds it."""
    lock, refusal = None, None
    if is_main:
        try:
            lock = hold_run_lock(lock_path(last_checkpoint), run_dir)
        except RunBusyError as error:
            refusal = str(error)
    refusal = broadcast_object(refusal)
    if refusal is not None:
        raise RunBusyError(refusal)
    return lock


def release_run_lock(path: Path) -> None:
    """Give the lock taken by `hold_run_lock` back (a no-op when this process does not hold it)."""
    fd = _HELD.pop(Path(path).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the only descriptor drops the flock
