"""torch.distributed (torchrun) support: joining the job, which process this is, keeping processes in step.

A plain single process is rank 0 of 1 and every function here is then a no-op.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn

from xautodl.errors import ConfigError


def world_info() -> tuple[int, int]:
    """(rank, world_size) of this process in the initialised process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True on the process that logs and writes files (rank 0)."""
    return world_info()[0] == 0


def setup_distributed(device: torch.device) -> tuple[int, int, int]:
    """Join the torchrun job described by the environment; returns (rank, world_size, local_rank).

    torchrun sets WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. With WORLD_SIZE above 1 this starts
    the process group: NCCL when `device` is CUDA (after making GPU LOCAL_RANK this process's GPU), gloo on CPU.
    Without torchrun (WORLD_SIZE unset or 1) nothing is started and (0, 1, 0) comes back.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size <= 1:
        return 0, 1, 0
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
            backend = "nccl"
        elif device.type == "cpu":
            backend = "gloo"
        else:
            raise ConfigError(f"several processes (torchrun, WORLD_SIZE={world_size}) need CUDA GPUs or the CPU, "
                              f"not {device.type}; pass --device cuda or --device cpu, or start a single process")
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), local_rank


@dataclass(frozen=True)
class Job:
    """This process's place in the run: its device (under torchrun on CUDA, GPU LOCAL_RANK), rank and world size."""

    device: torch.device
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@contextmanager
def distributed_job(device: torch.device) -> Iterator[Job]:
    """The one start-up of every entry point: join the torchrun job if there is one (`setup_distributed`), give
    this process its GPU, and leave the job however the block ends."""
    rank, world_size, local_rank = setup_distributed(device)
    try:
        if world_size > 1 and device.type == "cuda":
            device = torch.device("cuda", local_rank)
        yield Job(device, rank, world_size)
        if world_size > 1:
            # Leave together, and only once every collective has finished (a gloo barrier waits for them): see
            # `barrier` and `cleanup_distributed` for the abort at exit this prevents.
            barrier()
    finally:
        cleanup_distributed()


def cleanup_distributed() -> None:
    """Leave the process group started by `setup_distributed` (nothing to do for a single process)."""
    global _HOST_GROUP
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        # Give gloo's worker threads the GIL for a moment before this process can begin shutting Python down. A
        # worker that holds the last reference to a collective's tensor must take the GIL to free it; destroying
        # the group does not stop the workers while something (DistributedDataParallel does) still holds it, and a
        # worker that asks for the GIL once the interpreter is finalizing aborts the whole process ("terminate
        # called without an active exception", status 134, after the run's results were written). Without this
        # pause, 3 of 40 two-process jobs ending in all-reduces then a barrier aborted here; with it, 0 of 60.
        time.sleep(0.01)
    _HOST_GROUP = None


def broadcast_object(value: Any, src: int = 0) -> Any:
    """`value` as rank `src` has it, on every process (a picklable object such as a seed or a path)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def all_gather_objects(value: Any) -> list[Any]:
    """Every process's `value` (a picklable object), in rank order, on every process; `[value]` alone."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


_HOST_GROUP: Any = None  # see _host_group


def _host_group() -> Any:
    """The process group for small agreements between the processes' hosts: the default group when it is gloo,
    else (NCCL) a gloo group beside it, made on first use (by every process at the same call, as groups must be).
    Agreeing over gloo on CPU tensors never waits for the GPU, which an NCCL collective read on the host would."""
    global _HOST_GROUP
    if dist.get_backend() == "gloo":
        return None
    if _HOST_GROUP is None:
        _HOST_GROUP = dist.new_group(backend="gloo")
    return _HOST_GROUP


def largest_over_ranks(value: int) -> int:
    """The largest of the processes' `value`s (an int each), on every process; `value` itself alone."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    holder = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(holder, op=dist.ReduceOp.MAX, group=_host_group())
    return int(holder.item())


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over the processes, in place, on every process (one all-reduce); `tensor` itself alone."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


def checksums_per_rank(module: nn.Module) -> list[float]:
    """The sum of `module`'s parameters (in float64) on every process, in rank order, on every process: equal
    values mean the processes hold the same weights. One collective; `[own sum]` alone."""
    checksum = torch.stack([p.detach().double().sum() for p in module.parameters()]).sum()
    return all_gather_objects(checksum.item())


class LaggedMaximum:
    """The largest of the processes' values, asked after every step without waiting for the other processes: each
    `ask(value)` hands this process's value in and returns the largest of the values handed in at the call before
    (0 at the first); that all-reduce (gloo, CPU) has long finished by then. Every process gets the same answer at
    the same call. A single process gets its own value back at once."""

    def __init__(self) -> None:
        self._pending: tuple[torch.Tensor, Any] | None = None

    def ask(self, value: int) -> int:
        if not (dist.is_available() and dist.is_initialized()):
            return value
        answer = self.settle()
        holder = torch.tensor([value], dtype=torch.int64)
        self._pending = (holder, dist.all_reduce(holder, op=dist.ReduceOp.MAX, group=_host_group(), async_op=True))
        return answer

    def settle(self) -> int:
        """Wait for the question still open and return its answer (0 when none is open)."""
        if self._pending is None:
            return 0
        holder, work = self._pending
        work.wait()
        self._pending = None
        return int(holder.item())


def barrier() -> None:
    """Wait until every process gets here (nothing to wait for in a single process).

    A gloo barrier over the host group: NCCL never has to guess the process's GPU, as its `dist.barrier()` does,
    and no tensor is involved. That matters because a run ends right after its last barrier: a collective on a
    tensor made here (an all-reduce) can leave gloo's worker thread holding that tensor's last reference for a
    moment after the call returns; when the process is already shutting Python down by then, the thread cannot take
    the GIL to free it and the process aborts ("terminate called without an active exception", exit status 134)
    after all its work was written."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier(group=_host_group())


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s buffers (BatchNorm running statistics) to every process.

    DistributedDataParallel keeps parameters equal, but each process updates its running statistics on its own
    batches; after this every process evaluates, and would save, the same network.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=src)


def average_over_ranks(tensors: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """Each tensor replaced in place by its mean over the processes (a list of the same tensors); as is alone.

    One all-reduce of all of them flattened together. A None (the gradient of an op GDAS did not sample) must be
    None on every process, as it is when all processes draw the same sample.
    """
    tensors = list(tensors)
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensors
    present = [t for t in tensors if t is not None]
    if present:
        flat = torch.cat([t.reshape(-1) for t in present])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        for t, averaged in zip(present, flat.split([t.numel() for t in present])):
            t.copy_(averaged.view_as(t))
    return tensors


def per_process_batch(batch_size: int, world_size: int) -> int:
    """Each process's share of `batch_size`, the total over all processes (as the original DataParallel batch)."""
    if batch_size % world_size:
        raise ConfigError(f"--batch_size {batch_size} does not split evenly over {world_size} processes; "
                          f"use a multiple of {world_size}")
    return batch_size // world_size
