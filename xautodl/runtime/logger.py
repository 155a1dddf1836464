"""The one run logger: timestamped text lines (stdout and `run_dir/log.txt`), TensorBoard scalars and, with
`--wandb`, the same points in Weights & Biases (`runtime.wandb_log`)."""
from __future__ import annotations

import errno
import os
import sys
import time
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

from tqdm import tqdm

from xautodl.errors import XAutoDLError
from xautodl.runtime.wandb_log import WandbOptions, WandbRuns

T = TypeVar("T")


class RunLogger:
    """Writes a run's log: `log(msg)` lines, `scalar(tag, value, step)` TensorBoard points, `progress()` bars.

    `enabled=False` (non-zero ranks of a distributed job) turns every call into a no-op and creates no files.
    `quiet=True` turns progress bars off; log lines still reach stdout, so a quiet or non-terminal run shows
    plain periodic lines instead of bars.

    TensorBoard: each run (a seed of a search, a setting of train-a-net) gets its own event folder,
    `RunFiles.tensorboard`, so that TensorBoard shows one line per run instead of interleaving runs on the same steps.
    A writer is created on a folder's first scalar, with `purge_step` at that scalar's step: points an interrupted
    session logged past its last checkpoint are hidden instead of shown twice when the resumed run logs them again.
    If stdout is closed under the run (`... | head`), the run goes on and keeps writing its log file.

    Weights & Biases (`wandb=WandbOptions`): one wandb run per event folder, which gets the same scalars, plus
    `table` and `image`. The loop opens it after resuming (`begin_run`, with the id its checkpoint kept) and sends
    an epoch's points once that epoch is checkpointed (`checkpointed`), so that a resumed epoch is never sent twice.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        log_name: str = "log.txt",
        tensorboard: bool = True,
        enabled: bool = True,
        quiet: bool = False,
        tensorboard_dir: str | os.PathLike | None = None,
        wandb: WandbOptions | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.log_path = self.run_dir / log_name
        self.enabled = enabled
        self.quiet = quiet
        self._use_tensorboard = tensorboard
        self._tensorboard_dir = Path(tensorboard_dir) if tensorboard_dir is not None else self.run_dir
        self._writers: dict[Path, Any] = {}
        self._file: IO[str] | None = None
        if enabled:
            self._file = self._open_log_file()
        self._wandb = WandbRuns(wandb, self.run_dir, self.log) if enabled and wandb is not None else None

    def log(self, message: str) -> None:
        """Print `message` with a timestamp and append it to the log file."""
        if not self.enabled:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        lines = "\n".join(f"[{stamp}] {line}" for line in str(message).splitlines() or [""])
        # tqdm.write prints above an active bar instead of tearing it apart (plain print when there is none).
        try:
            tqdm.write(lines, file=sys.stdout)
        except BrokenPipeError:
            _detach_closed_stdout()
        assert self._file is not None
        self._file.write(lines + "\n")
        self._file.flush()

    def scalar(self, tag: str, value: float, step: int, run: str | os.PathLike | None = None) -> None:
        """Record one scalar point, in the event folder `run` (default: the logger's)."""
        self.scalars({tag: value}, step, run)

    def scalars(self, values: Mapping[str, float], step: int, run: str | os.PathLike | None = None) -> None:
        """Record several scalars (tag -> value) at the same step, in the event folder `run` (and its wandb run)."""
        if not self.enabled:
            return
        if self._use_tensorboard:
            writer = self._tensorboard(run, int(step))
            for tag, value in values.items():
                writer.add_scalar(tag, float(value), global_step=int(step))
        if self._wandb is not None:
            self._wandb.stage(self._folder(run), {tag: float(value) for tag, value in values.items()}, int(step))

    def table(self, tag: str, columns: list[str], rows: list[list[Any]], step: int,
              run: str | os.PathLike | None = None) -> None:
        """Record a table as of step `step` (wandb only: TensorBoard has no tables)."""
        if self.enabled and self._wandb is not None:
            self._wandb.table(self._folder(run), tag, columns, rows, int(step))

    def image(self, tag: str, path: str | os.PathLike, run: str | os.PathLike | None = None) -> None:
        """Record an image file (wandb only), e.g. a final cell drawing."""
        if self.enabled and self._wandb is not None:
            self._wandb.image(self._folder(run), tag, Path(path))

    def begin_run(self, run_id: str | None = None, run: str | os.PathLike | None = None) -> str | None:
        """Open the wandb run of the event folder `run`, continuing the wandb run `run_id` (kept in the run's
        checkpoint) when given; returns the id to keep (`run_id` as given when wandb is off)."""
        if not (self.enabled and self._wandb is not None):
            return run_id
        return self._wandb.begin(self._folder(run), run_id)

    def checkpointed(self, step: int, run: str | os.PathLike | None = None) -> None:
        """Step `step` of the event folder `run` is checkpointed: send its wandb points (and any earlier ones)."""
        if self.enabled and self._wandb is not None:
            self._wandb.commit(self._folder(run), int(step))

    def progress(self, iterable: Iterable[T], total: int | None = None, desc: str | None = None) -> Iterable[T]:
        """`iterable` wrapped in a tqdm bar (with ETA) on an interactive terminal, otherwise unchanged."""
        if not self.enabled or self.quiet or not sys.stdout.isatty():
            return iterable
        return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stdout)

    def flush(self) -> None:
        """Push buffered TensorBoard events to disk."""
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        """Flush and close the log file, the TensorBoard writers and the wandb runs (ending the log with the
        `wandb sync` command of an offline run); later calls are no-ops."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        if self._wandb is not None:
            for line in self._wandb.finish():
                self.log(line)
            self._wandb = None
        if self._file is not None:
            self._file.close()
            self._file = None
        self.enabled = False

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _open_log_file(self) -> IO[str]:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # O_NOFOLLOW: a symbolic link planted in the run folder must not redirect the log to another file.
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            return os.fdopen(fd, "a", encoding="utf-8")
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise XAutoDLError(
                    f"the run log {self.log_path} is a symbolic link; a run writes its log only to a plain file in "
                    f"its run folder: remove the link (or choose another output folder, --save_dir)") from None
            raise XAutoDLError(
                f"cannot write the run log {self.log_path}: {err.strerror or err}; check that {self.run_dir} "
                "is writable or choose another output folder (--save_dir)"
            ) from err

    def _folder(self, run: str | os.PathLike | None) -> Path:
        return self._tensorboard_dir if run is None else Path(run)

    def _tensorboard(self, run: str | os.PathLike | None, step: int) -> Any:
        folder = self._folder(run)
        if folder not in self._writers:
            self._writers[folder] = _summary_writer_class()(log_dir=str(folder), purge_step=step)
        return self._writers[folder]


def _summary_writer_class() -> type:
    """torch's SummaryWriter, imported on first use (TensorBoard's import is slow and only runs that log scalars
    need it) and kept away from TensorFlow: TensorBoard imports TensorFlow when it is installed (the `tf` extra),
    which costs seconds and GPU memory in a PyTorch run. Its `tensorboard.compat.notf` marker module, which
    TensorBoard's own TensorFlow-free build ships, makes it use its built-in stub instead (the TensorFlow search
    writes its events the same way)."""
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter


def _detach_closed_stdout() -> None:
    """Point stdout at /dev/null after its reader went away (`... | head`): the run goes on and logs to its file,
    and neither later prints nor the interpreter's final flush raise BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)

