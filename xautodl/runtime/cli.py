"""Entry-point wrapper: user-facing errors become one readable line and an exit status, not a traceback."""
from __future__ import annotations

import sys
from typing import Callable, TypeVar

from xautodl.errors import XAutoDLError

EXIT_USER_ERROR = 1
# 128 + SIGINT, the status shells give a program stopped with Ctrl-C.
EXIT_INTERRUPTED = 130

T = TypeVar("T")


def main_guard(main_fn: Callable[[], T]) -> T:
    """Run `main_fn()` and return its result.

    An XAutoDLError prints `error: <message>` on stderr and exits with status 1; Ctrl-C (KeyboardInterrupt)
    prints `interrupted` and exits with status 130. Other exceptions are bugs and keep their traceback.
    """
    try:
        return main_fn()
    except XAutoDLError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
