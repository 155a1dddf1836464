"""Entry-point wrapper: user-facing errors become one readable line and an exit status, not a traceback."""
from __future__ import annotations

import os
import sys
from typing import Callable, TypeVar

from xautodl.errors import XAutoDLError
from xautodl.runtime.signals import Preempted, Terminated, closing_line_and_status, ending_signals_raise

EXIT_USER_ERROR = 1

T = TypeVar("T")


def _say(line: str) -> None:
    """Print a closing line on stderr, once per job: under torchrun only global rank 0 speaks (every rank meets the
    same command line and the same settings, so they fail alike)."""
    if os.environ.get("RANK", "0") in ("", "0"):
        print(line, file=sys.stderr, flush=True)


def main_guard(main_fn: Callable[[], T]) -> T:
    """Run `main_fn()` and return its result.

    An XAutoDLError prints `error: <message>` on stderr and exits with status 1; Ctrl-C (KeyboardInterrupt)
    prints `interrupted` and exits with status 130. SIGTERM and SIGHUP within a loop's epochs stop it at the next
    step boundary, saved (`Preempted`: its line, status 75, EXIT_PREEMPTED); elsewhere, or as a second signal, they
    print `terminated by SIGTERM` (SIGHUP) and exit with 128 + the signal number. Under torchrun only rank 0
    prints. Other exceptions are bugs and keep their traceback.
    """
    try:
        with ending_signals_raise():
            return main_fn()
    except XAutoDLError as err:
        _say(f"error: {err}")
        raise SystemExit(EXIT_USER_ERROR) from None
    except (KeyboardInterrupt, Terminated, Preempted) as stopped:
        line, status = closing_line_and_status(stopped)
        _say(line)
        raise SystemExit(status) from None
