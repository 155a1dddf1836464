"""Seeding every random number generator a run uses, and saving / restoring their states for exact resume."""
from __future__ import annotations

import random
import secrets
from typing import Any

import numpy as np
import torch

from xautodl.errors import ConfigError

RANDOM_SEED = -1
# Drawn seeds stay short because they appear in file names (checkpoint/seed-{seed}-basic.pth).
DRAWN_SEED_LIMIT = 100_000


def seed_everything(seed: int) -> int:
    """Seed python's `random`, numpy and torch (all devices) with `seed`; -1 draws a fresh seed.

    Returns the seed in force, so that a run started with -1 can log it and be repeated.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < RANDOM_SEED or seed >= 2**32:
        raise ConfigError(f"seed must be -1 (draw one at random) or an integer in [0, 2**32), got {seed!r}")
    if seed == RANDOM_SEED:
        seed = 1 + secrets.randbelow(DRAWN_SEED_LIMIT - 1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed


def capture_rng_state() -> dict[str, Any]:
    """The states of the python, numpy and torch (CPU, and CUDA when present) generators as plain data.

    The result holds only tensors, ints, floats, strings and None, so it can go into a checkpoint that loads with
    `torch.load(weights_only=True)`.
    """
    version, mt_words, gauss_next = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_cached_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(mt_words, dtype=torch.int64), "gauss_next": gauss_next},
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back generator states from `capture_rng_state()`.

    CUDA states are restored when this process uses CUDA and has as many devices; a checkpoint written on a GPU
    machine and resumed on a CPU-only one keeps the CPU-side streams exact and ignores the rest.
    """
    py = state["python"]
    random.setstate((py["version"], tuple(int(word) for word in py["state"].tolist()), py["gauss_next"]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda")
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
