"""Which seed a re-run of a command continues with (the file names of a run carry its seed)."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from xautodl.errors import XAutoDLError
from xautodl.runtime.checkpoint import load_checkpoint, previous_path
from xautodl.runtime.run_record import RunFiles
from xautodl.runtime.seeding import RANDOM_SEED, seed_everything


class SeedChoice(NamedTuple):
    """The seed a run uses, and for `--rand_seed -1` the line saying why (empty for a seed given explicitly)."""

    seed: int
    note: str = ""


def seed_to_run(requested: int, run_dir: Path) -> SeedChoice:
    """`requested`, or for -1 the seed of the newest unfinished run in `run_dir` (so re-running the same
    command resumes it), else a freshly drawn seed. Finished runs are never repeated under their seed; the note
    says when a re-run starts a new seed because the runs already there are finished."""
    if requested != RANDOM_SEED:
        return SeedChoice(requested)
    candidates = sorted(RunFiles.seed_checkpoints(run_dir), key=lambda p: p.stat().st_mtime)
    finished = []
    for path in reversed(candidates):
        state = _readable_state(path)
        if state is None:
            continue
        seed = state.get("seed")
        if seed is None:
            continue  # not a checkpoint of a seed's run
        if not state.get("finished", False):
            return SeedChoice(int(seed), f"--rand_seed -1: resuming the unfinished run of seed {seed} ({path})")
        finished.append(int(seed))
    seed = seed_everything(RANDOM_SEED)
    if not finished:
        return SeedChoice(seed, f"--rand_seed -1: drew seed {seed}")
    seeds = ", ".join(map(str, sorted(finished)))
    return SeedChoice(seed, f"--rand_seed -1: the run(s) of seed {seeds} in {run_dir} are finished, so "
                            f"this starts a new run with the drawn seed {seed}; to look at a finished one instead: "
                            f"python -m xautodl.summary {run_dir}")


def _readable_state(path: Path) -> dict | None:
    """The state in `path`, else in `<path>.prev` when `path` is damaged (the run resumes from that one too);
    None when neither loads."""
    for candidate in (path, previous_path(path)):
        try:
            return load_checkpoint(candidate)
        except XAutoDLError:
            continue
    return None
