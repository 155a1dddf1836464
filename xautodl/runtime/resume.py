"""Which seed a re-run of a command continues with (the file names of a run carry its seed)."""
from __future__ import annotations

from pathlib import Path

from xautodl.errors import XAutoDLError
from xautodl.runtime.checkpoint import load_checkpoint, previous_path
from xautodl.runtime.seeding import RANDOM_SEED, seed_everything


def seed_to_run(requested: int, checkpoint_dir: Path) -> int:
    """`requested`, or for -1 the seed of the newest unfinished run in `checkpoint_dir` (so re-running the same
    command resumes it), else a freshly drawn seed. Finished runs are never repeated under their seed."""
    if requested != RANDOM_SEED:
        return requested
    candidates = sorted(Path(checkpoint_dir).glob("seed-*-basic.pth"), key=lambda p: p.stat().st_mtime)
    for path in reversed(candidates):
        state = _readable_state(path)
        if state is None:
            continue
        seed = state.get("seed", state.get("meta", {}).get("seed"))
        if not state.get("finished", False) and seed is not None:
            return int(seed)
    return seed_everything(RANDOM_SEED)


def _readable_state(path: Path) -> dict | None:
    """The state in `path`, else in `<path>.prev` when `path` is damaged (the run resumes from that one too);
    None when neither loads."""
    for candidate in (path, previous_path(path)):
        try:
            return load_checkpoint(candidate)
        except XAutoDLError:
            continue
    return None
