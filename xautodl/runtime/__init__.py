"""Run primitives: device choice, seeding and RNG state, logging, atomic checkpoints, CLI error handling."""
from __future__ import annotations

from xautodl.runtime.checkpoint import (
    CHECKPOINT_SCHEMA,
    UnsafeCheckpointError,
    load_checkpoint,
    load_resume_checkpoint,
    previous_path,
    save_checkpoint,
)
from xautodl.runtime.cli import main_guard
from xautodl.runtime.device import select_device
from xautodl.runtime.distributed import is_main_process, world_info
from xautodl.runtime.logger import RunLogger
from xautodl.runtime.seeding import capture_rng_state, restore_rng_state, seed_everything
from xautodl.runtime.serialization import atomic_write_json, to_plain

__all__ = [
    "CHECKPOINT_SCHEMA",
    "RunLogger",
    "UnsafeCheckpointError",
    "atomic_write_json",
    "capture_rng_state",
    "is_main_process",
    "load_checkpoint",
    "load_resume_checkpoint",
    "main_guard",
    "previous_path",
    "restore_rng_state",
    "save_checkpoint",
    "seed_everything",
    "select_device",
    "to_plain",
    "world_info",
]
