"""Which process of a torch.distributed (torchrun) job this is; a plain single process is rank 0 of 1."""
from __future__ import annotations

import torch.distributed as dist


def world_info() -> tuple[int, int]:
    """(rank, world_size) of this process in the initialised process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True on the process that logs and writes files (rank 0)."""
    return world_info()[0] == 0
