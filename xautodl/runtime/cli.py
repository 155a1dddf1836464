"""Entry-point wrapper: user-facing errors become one readable line and an exit status, not a traceback."""
from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

from xautodl.errors import XAutoDLError

EXIT_USER_ERROR = 1
# 128 + SIGINT, the status shells give a program stopped with Ctrl-C.
EXIT_INTERRUPTED = 130
# Signals that end a run the way Ctrl-C does (a scheduler's or `timeout`'s SIGTERM, a closed terminal's SIGHUP).
ENDING_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))

T = TypeVar("T")


class Terminated(BaseException):
    """Raised in the main thread when an ending signal arrives (a BaseException, like KeyboardInterrupt, so that
    no `except Exception` swallows it); the checkpoint of the last complete epoch stays the run's state."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, frame) -> None:
    raise Terminated(signum)


@contextmanager
def ending_signals_raise() -> Iterator[None]:
    """Within the block SIGTERM and SIGHUP raise Terminated (outside the main thread nothing changes)."""
    previous = {}
    try:
        for signum in ENDING_SIGNALS:
            previous[signum] = signal.signal(signum, _raise_terminated)
    except ValueError:  # not the main thread: signals cannot be handled here
        pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _say(line: str) -> None:
    """Print a closing line on stderr, once per job: under torchrun only global rank 0 speaks (every rank meets the
    same command line and the same settings, so they fail alike)."""
    if os.environ.get("RANK", "0") in ("", "0"):
        print(line, file=sys.stderr, flush=True)


def main_guard(main_fn: Callable[[], T]) -> T:
    """Run `main_fn()` and return its result.

    An XAutoDLError prints `error: <message>` on stderr and exits with status 1; Ctrl-C (KeyboardInterrupt)
    prints `interrupted` and exits with status 130; SIGTERM and SIGHUP print `terminated by SIGTERM` (SIGHUP) and
    exit with 128 + the signal number. Under torchrun only rank 0 prints. Other exceptions are bugs and keep their
    traceback.
    """
    try:
        with ending_signals_raise():
            return main_fn()
    except XAutoDLError as err:
        _say(f"error: {err}")
        raise SystemExit(EXIT_USER_ERROR) from None
    except KeyboardInterrupt:
        _say("interrupted")
        raise SystemExit(EXIT_INTERRUPTED) from None
    except Terminated as ended:
        _say(f"terminated by {ended}; the run's last complete epoch is kept and re-running the command resumes it")
        raise SystemExit(128 + ended.signum) from None
