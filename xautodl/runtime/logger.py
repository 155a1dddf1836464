"""The one run logger: timestamped text lines (stdout and `run_dir/log.txt`) and TensorBoard scalars."""
from __future__ import annotations

import os
import sys
import time
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

from tqdm import tqdm

from xautodl.errors import XAutoDLError

T = TypeVar("T")


class RunLogger:
    """Writes a run's log: `log(msg)` lines, `scalar(tag, value, step)` TensorBoard points, `progress()` bars.

    `enabled=False` (non-zero ranks of a distributed job) turns every call into a no-op and creates no files.
    `quiet=True` turns progress bars off; log lines still reach stdout, so a quiet or non-terminal run shows
    plain periodic lines instead of bars. The TensorBoard writer is created on the first scalar, so runs that
    never log a scalar do not pay for it.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        log_name: str = "log.txt",
        tensorboard: bool = True,
        enabled: bool = True,
        quiet: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.log_path = self.run_dir / log_name
        self.enabled = enabled
        self.quiet = quiet
        self._use_tensorboard = tensorboard
        self._writer: Any = None
        self._file: IO[str] | None = None
        if enabled:
            self._file = self._open_log_file()

    def log(self, message: str) -> None:
        """Print `message` with a timestamp and append it to the log file."""
        if not self.enabled:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        lines = "\n".join(f"[{stamp}] {line}" for line in str(message).splitlines() or [""])
        # tqdm.write prints above an active bar instead of tearing it apart (plain print when there is none).
        tqdm.write(lines, file=sys.stdout)
        assert self._file is not None
        self._file.write(lines + "\n")
        self._file.flush()

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Record one TensorBoard scalar point."""
        if not (self.enabled and self._use_tensorboard):
            return
        self._tensorboard().add_scalar(tag, float(value), global_step=int(step))

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """Record several scalars (tag -> value) at the same step."""
        for tag, value in values.items():
            self.scalar(tag, value, step)

    def progress(self, iterable: Iterable[T], total: int | None = None, desc: str | None = None) -> Iterable[T]:
        """`iterable` wrapped in a tqdm bar (with ETA) on an interactive terminal, otherwise unchanged."""
        if not self.enabled or self.quiet or not sys.stdout.isatty():
            return iterable
        return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stdout)

    def flush(self) -> None:
        """Push buffered TensorBoard events to disk."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the log file and the TensorBoard writer; later calls are no-ops."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
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
            return open(self.log_path, "a", encoding="utf-8")
        except OSError as err:
            raise XAutoDLError(
                f"cannot write the run log {self.log_path}: {err.strerror or err}; check that {self.run_dir} "
                "is writable or choose another output folder (--save_dir)"
            ) from err

    def _tensorboard(self) -> Any:
        if self._writer is None:
            _tensorboard_without_tensorflow()
            # Imported here: TensorBoard's import is slow and only runs that log scalars need it.
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.run_dir))
        return self._writer


def _tensorboard_without_tensorflow() -> None:
    """Make TensorBoard write its event files with its own TensorFlow stub, never by importing TensorFlow.

    TensorBoard imports TensorFlow for its file I/O whenever TensorFlow is installed (the `tf` extra), which would
    put seconds of start-up, TensorFlow's log lines and its native libraries into every PyTorch run. An importable
    `tensorboard.compat.notf` is TensorBoard's own switch to the stub (its `no_tensorflow` build target).
    """
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
