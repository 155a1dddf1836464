"""Seconds per full-size GDAS search epoch on the NAS-Bench-201 space (the paper's setting), with our real loop.

One epoch = 25,000 search pairs of 32x32 images (CIFAR-10's train/valid halves), batch 64, C=16, N=5, i.e. 391
iterations of (weight step + architecture step). The data are synthetic uint8 images held on the device and augmented
there, exactly as `get_search_loader` serves CIFAR-10. The original tool reported about 8 GPU hours for 250 epochs
(about 115 s per epoch on a V100).

    python benchmarks/gdas_epoch.py --device cuda                       # fp32, bf16, channels_last variants
    python benchmarks/gdas_epoch.py --device cpu --limit_batches 20     # a quick CPU estimate
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xautodl.datasets import BatchAugment, ImageTensors, SearchLoader, TensorLoader, dataset_info  # noqa: E402
from xautodl.runtime import RunLogger  # noqa: E402
from xautodl.runtime.precision import to_channels_last  # noqa: E402
from xautodl.search.registry import build_algorithm  # noqa: E402
from xautodl.search.loop import SearchLoop, SearchRun  # noqa: E402
from xautodl.search.mixing import GumbelHardMixer  # noqa: E402
from xautodl.spaces.nas201 import NB201Supernet  # noqa: E402
from xautodl.optim.schedules import CosineWithWarmup  # noqa: E402

VARIANTS = {"fp32": ("off", False), "bf16": ("bf16", False), "fp32+cl": ("off", True), "bf16+cl": ("bf16", True)}


def synthetic_search_loader(device: torch.device, pairs: int, batch_size: int) -> SearchLoader:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2 * pairs, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (2 * pairs,), generator=generator)
    augment = BatchAugment.for_dataset(dataset_info("cifar10"), train=True)
    sides = [ImageTensors(images[:pairs], labels[:pairs]), ImageTensors(images[pairs:], labels[pairs:])]
    return SearchLoader(*[TensorLoader(side, batch_size, device, augment, seed=0, stream=k) for k, side in enumerate(sides)])


def build_loop(device: torch.device, loader: SearchLoader, amp: str, channels_last: bool, limit: int, run_dir: Path):
    torch.manual_seed(0)
    mixer = GumbelHardMixer(tau=10.0, seed=0)
    model = to_channels_last(NB201Supernet(16, 5, 10, mixer).to(device), channels_last)
    w_opt = torch.optim.SGD(model.weights(), lr=0.025, momentum=0.9, weight_decay=5e-4, nesterov=True)
    a_opt = torch.optim.Adam(model.alphas(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    algo = build_algorithm("GDAS", model, torch.nn.CrossEntropyLoss(), w_opt, a_opt, amp=amp)
    run = SearchRun(run_dir, 0, "nas-bench-201", "GDAS", "synthetic")
    return SearchLoop(model, algo, loader, CosineWithWarmup(w_opt, 250, 0, 0.001), run,
                      RunLogger(run_dir, enabled=False), 250, (10.0, 0.1), mixer=mixer, limit_batches=limit,
                      progress=False,
                      channels_last=channels_last)


def limit_batches(loop: SearchLoop, steps: int) -> None:
    """Make the loop's epochs `steps` steps long (0: the whole loader)."""
    loop.options = dataclasses.replace(loop.options, limit_batches=steps)


def time_epoch(loop: SearchLoop, device: torch.device) -> tuple[float, int]:
    """Seconds of one epoch and the number of iterations it ran (after a short warm-up)."""
    full = loop.options.limit_batches
    limit_batches(loop, 10)
    loop.run_epoch(0)  # warm-up: cuDNN autotuning, allocator, first-call overheads
    limit_batches(loop, full)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    loop.run_epoch(1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, loop.epoch_steps()


def profile_iterations(loop: SearchLoop, device: torch.device, iterations: int) -> None:
    """Where the time of a search iteration goes: the busiest ops by self time on the device (or CPU), and the
    kernels launched and ops dispatched per iteration (a launch-bound step scales with these)."""
    from torch.profiler import ProfilerActivity, profile

    limit_batches(loop, 10)
    loop.run_epoch(0)  # warm-up
    limit_batches(loop, iterations)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        loop.run_epoch(1)
        if device.type == "cuda":
            torch.cuda.synchronize()
    events = prof.key_averages()
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(events.table(sort_by=sort_by, row_limit=25))
    aten_ops = sum(e.count for e in events if e.key.startswith("aten::"))
    print(f"per iteration: {aten_ops / iterations:.0f} aten ops dispatched (nested calls included)")
    if device.type == "cuda":
        kernels = [e for e in prof.events() if str(e.device_type).endswith("CUDA")]
        busy_us = sum(getattr(e, "device_time_total", 0.0) for e in kernels)
        print(f"per iteration: {len(kernels) / iterations:.0f} kernels, {busy_us / iterations / 1e3:.2f} ms of "
              f"kernel time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--pairs", type=int, default=25000)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--limit_batches", type=int, default=0, help="time only N iterations and extrapolate")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="instead of timing epochs, profile N iterations of the first variant")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    loader = synthetic_search_loader(device, args.pairs, args.batch_size)
    print(f"torch {torch.__version__} | device {device}"
          f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''} | "
          f"{len(loader)} iterations of batch {args.batch_size} per epoch")
    print(f"{'variant':10s} {'s/epoch':>9s} {'iter/s':>8s} {'img/s':>9s} {'peak MiB':>9s}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.profile:
            amp, channels_last = VARIANTS[args.variants[0]]
            profile_iterations(build_loop(device, loader, amp, channels_last, 0, Path(tmp)), device, args.profile)
            return
        for name in args.variants:
            amp, channels_last = VARIANTS[name]
            loop = build_loop(device, loader, amp, channels_last, args.limit_batches, Path(tmp))
            seconds, steps = time_epoch(loop, device)
            per_epoch = seconds * len(loader) / steps
            peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
            print(f"{name:10s} {per_epoch:9.1f} {steps / seconds:8.1f} {steps * args.batch_size * 2 / seconds:9.0f} "
                  f"{peak:9.0f}", flush=True)


if __name__ == "__main__":
    main()
