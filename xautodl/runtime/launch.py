"""`python -m xautodl.runtime.launch [torchrun options] SCRIPT [ARGS]`: torchrun, ending like a single process.

The drivers start several processes through this instead of `python -m torch.distributed.run`. It takes the same
options and runs the same launcher; what differs is how a run ends: when a worker fails (its one `error:` line, or
a bug's traceback, is already on stderr from that worker) or when the job is stopped by SIGTERM / SIGHUP (rank 0
says `stopped by ...` or `terminated by ...` itself), torchrun would add its own traceback and a failure banner
per process. Here the launcher exits quietly with the workers' status instead, the status a single process gives:
75 when they stopped saved at a step boundary, 128 + N when signal N ended them at once. On a signal torchrun
raises in the launcher before it can see the workers' statuses, so rank 0 leaves its status in the file named by
XAUTODL_LAUNCH_STATUS_FILE (`runtime.signals.report_status_to_launcher`).
"""
from __future__ import annotations

import logging
import sys
from typing import Sequence

from xautodl.runtime.signals import shell_status, status_reported_by_workers


def main(argv: Sequence[str] | None = None) -> int:
    """Launch the job described by `argv` (torchrun's command line); returns the status to exit with."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # The agent's own lines ("failed (exitcode: 1) local_rank: 0", "Sending process ... closing signal SIGTERM")
    # repeat what the workers said.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    args = torchrun.parse_args(list(sys.argv[1:] if argv is None else argv))
    with status_reported_by_workers() as reported_status:
        try:
            torchrun.run(args)
        except ChildFailedError as failed:
            _, failure = failed.get_first_failure()
            return shell_status(failure.exitcode) or 1
        except SignalException as ended:
            # torchrun has handed the signal to the workers and waited for them: they may have stopped saved.
            return reported_status() or 128 + int(ended.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
