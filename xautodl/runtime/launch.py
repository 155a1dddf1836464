"""`python -m xautodl.runtime.launch [torchrun options] SCRIPT [ARGS]`: torchrun, ending like a single process.

The drivers start several processes through this instead of `python -m torch.distributed.run`. It takes the same
options and runs the same launcher; what differs is how a run ends: when a worker fails (its one `error:` line, or
a bug's traceback, is already on stderr from that worker) or when the job is stopped by SIGTERM / SIGHUP (the
workers say `terminated by ...` themselves), torchrun would add its own traceback and a failure banner per
process. Here the launcher exits quietly with the worker's status instead (128 + N for signal N), the status a
single process gives.
"""
from __future__ import annotations

import logging
import sys
from typing import Sequence


def exit_status(exitcode: int) -> int:
    """A worker's exit status as a shell reports it (a negative exitcode -N means killed by signal N)."""
    return 128 - exitcode if exitcode < 0 else exitcode


def main(argv: Sequence[str] | None = None) -> int:
    """Launch the job described by `argv` (torchrun's command line); returns the status to exit with."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # The agent's own lines ("failed (exitcode: 1) local_rank: 0", "Sending process ... closing signal SIGTERM")
    # repeat what the workers said.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    args = torchrun.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        torchrun.run(args)
    except ChildFailedError as failed:
        _, failure = failed.get_first_failure()
        return exit_status(failure.exitcode) or 1
    except SignalException as ended:
        return 128 + int(ended.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
