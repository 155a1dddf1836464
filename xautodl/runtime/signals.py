"""The signals that end a run, in one place: how they raise, how a file write holds them back, and how a loop turns
the first one into a stop at its next step boundary (preemption without losing the epoch in progress).

- `ending_signals_raise()` (the entry points' wrapper): SIGTERM and SIGHUP raise `Terminated` wherever the run is.
- `stop_at_step_boundary()` (the epoch skeleton, around its epochs): the first SIGTERM / SIGHUP only notes a
  `StopRequest`; the loop finishes the step it is in, saves and raises `Preempted`. A second signal raises
  `Terminated` at once, for a step that would not end in the scheduler's grace period.
- `signals_deferred()` (checkpoint and JSON writes): any ending signal, SIGINT included, takes effect after the
  write, never inside it.
- `closing_line_and_status()` (the entry points) and `status_reported_by_workers()` (`runtime.launch`): how a
  stopped run ends, as one process or as a torchrun job.
"""
from __future__ import annotations

import os
import signal
import tempfile
import threading
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from xautodl.errors import XAutoDLError

# Signals that end a run the way Ctrl-C does (a scheduler's or `timeout`'s SIGTERM, a closed terminal's SIGHUP).
ENDING_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
# Those and Ctrl-C's SIGINT: what a file write holds back.
_WRITE_DEFERRED_SIGNALS = (signal.SIGINT, *ENDING_SIGNALS)
# The status of a run stopped by a signal after saving everything it had done (mid-epoch included): sysexits.h's
# EX_TEMPFAIL, "a temporary failure: retrying later may succeed". A plain `Terminated` ends with 128 + the signal.
EXIT_PREEMPTED = 75
# 128 + SIGINT, the status shells give a program stopped with Ctrl-C.
EXIT_INTERRUPTED = 130
# The environment variable naming the file in which rank 0 leaves its exit status for `xautodl.runtime.launch`,
# which torchrun makes raise on a signal before it can see the workers' statuses.
STATUS_FILE_ENV = "XAUTODL_LAUNCH_STATUS_FILE"


class Terminated(BaseException):
    """Raised in the main thread when an ending signal arrives (a BaseException, like KeyboardInterrupt, so that
    no `except Exception` swallows it); the checkpoint of the last complete epoch stays the run's state."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Preempted(BaseException):
    """A loop stopped on a signal at a step boundary after saving its state (the message says where and how to go
    on); the entry point exits with EXIT_PREEMPTED."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


def report_status_to_launcher(status: int) -> None:
    """Rank 0 of a job started by `xautodl.runtime.launch` leaves `status` for it (elsewhere: nothing to do)."""
    target = os.environ.get(STATUS_FILE_ENV)
    if target and os.environ.get("RANK", "0") in ("", "0"):
        try:
            Path(target).write_text(str(status))
        except OSError:
            pass  # the launcher then reports the signal's own status


@contextmanager
def status_reported_by_workers() -> Iterator[Callable[[], int | None]]:
    """For the launcher: within the block the workers it starts (they inherit the environment) find where rank 0
    leaves its exit status (`report_status_to_launcher`); the yielded function reads it (None when none was left)."""
    with tempfile.TemporaryDirectory(prefix="xautodl-launch-") as folder:
        status_file = Path(folder) / "status"
        os.environ[STATUS_FILE_ENV] = str(status_file)

        def reported() -> int | None:
            try:
                return int(status_file.read_text())
            except (OSError, ValueError):
                return None

        yield reported


def shell_status(exitcode: int) -> int:
    """A process's exit status as a shell reports it (a negative exitcode -N means killed by signal N: 128 + N)."""
    return 128 - exitcode if exitcode < 0 else exitcode


def closing_line_and_status(stopped: KeyboardInterrupt | Terminated | Preempted) -> tuple[str, int]:
    """How a run a signal stopped ends: the line it prints and its exit status. Ctrl-C exits with 130; Preempted
    (saved at a step boundary) says where it stopped and exits with EXIT_PREEMPTED, which rank 0 reports to the
    launcher; Terminated exits with 128 + the signal number."""
    if isinstance(stopped, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    if isinstance(stopped, Preempted):
        report_status_to_launcher(EXIT_PREEMPTED)
        return str(stopped), EXIT_PREEMPTED
    return (f"terminated by {stopped}; the run's last complete epoch is kept and re-running the command resumes it",
            128 + stopped.signum)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def _in_main_thread() -> bool:
    # Handlers can only be set from the main thread; elsewhere every helper here leaves the handlers alone.
    return threading.current_thread() is threading.main_thread()


def _raise_terminated(signum: int, frame) -> None:
    raise Terminated(signum)


def _hand_on(signum: int, frame, handler: Any) -> None:
    """Give a signal that was held back to the handler that is in force again (the default action: raise it)."""
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)


@contextmanager
def _handlers(signals: tuple[int, ...], handler: Callable) -> Iterator[dict[int, Any]]:
    """`handler` for `signals` within the block; yields the handlers it replaced, which are back afterwards."""
    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        yield previous
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextmanager
def ending_signals_raise() -> Iterator[None]:
    """Within the block SIGTERM and SIGHUP raise Terminated (outside the main thread nothing changes)."""
    if not _in_main_thread():
        yield
        return
    with _handlers(ENDING_SIGNALS, _raise_terminated):
        yield


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold the ending signals back while a file is replaced: a signal then takes effect after the write, never
    inside it, where its exception could leave the temporary file (or a half-kept `.prev`) behind.

    While the block runs, a stand-in handler only notes the first ending signal; afterwards the run's own handlers
    are back and that signal is handed to its handler (or, with the default action, raised again). A process-wide
    signal mask would not do: the kernel may deliver the signal to any of torch's threads instead."""
    if not _in_main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    with _handlers(_WRITE_DEFERRED_SIGNALS, lambda signum, frame: caught.append((signum, frame))) as previous:
        yield
    if caught:
        signum, frame = caught[0]
        _hand_on(signum, frame, previous[signum])


class StopRequest:
    """The first ending signal that arrived while a loop ran: `signum` (0 while none did)."""

    def __init__(self) -> None:
        self.signum = 0
        self.acted_on = False  # set by the loop once it has saved and raised Preempted

    def note(self, signum: int, frame) -> None:
        if self.acted_on:  # the run is already stopping, saved (torchrun signals the last processes to end)
            return
        if self.signum:  # a second signal: stop now, whatever the step is doing
            raise Terminated(signum)
        self.signum = signum


@contextmanager
def stop_at_step_boundary(several_processes: bool = False) -> Iterator[StopRequest]:
    """Within the block the first SIGTERM / SIGHUP only sets the yielded request's `signum`: the loop checks it
    after every step, saves and raises Preempted. A second signal raises Terminated at once.

    A request the block ends without acting on (the run had no step left) is handed to the handler in force
    outside, as if it had arrived just then. Outside the main thread the request never fills. With
    `several_processes` (torchrun), a bug-like exception after a stop request is the stop: torchrun stops the other
    processes with SIGTERM when one of them fails, and the collective of the step in progress then fails for want
    of that process; it becomes Terminated (an XAutoDLError, the user's problem, stays itself)."""
    request = StopRequest()
    if not _in_main_thread():
        yield request
        return
    with _handlers(ENDING_SIGNALS, request.note) as previous:
        try:
            yield request
        except Exception as err:
            if request.signum and several_processes and not isinstance(err, XAutoDLError):
                raise Terminated(request.signum) from None
            raise
    if request.signum and not request.acted_on:
        _hand_on(request.signum, None, previous[request.signum])
