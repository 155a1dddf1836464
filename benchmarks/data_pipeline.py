"""Images per second of xautodl's training loader against torchvision's per-image pipeline, on the same data.

    python benchmarks/data_pipeline.py                      # synthetic CIFAR-shaped data (offline)
    python benchmarks/data_pipeline.py --data_path $TORCH_HOME/cifar.python --device cuda

Ours: `TensorLoader` (uint8 images held on the device, crop 32 pad 4 + flip (+ cutout 16) applied batch-wise
there). Theirs: a Dataset that turns each uint8 image into a PIL image and applies RandomCrop(32, padding=4),
RandomHorizontalFlip, ToTensor and Normalize, in a DataLoader with 2 workers, batches moved to the same device.
Both pass over the same images with batch 256; each figure is the median of several passes after a warm-up pass,
the pipelines taking turns.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clone without installing
from xautodl.datasets import BatchAugment, ImageTensors, TensorLoader, dataset_info, load_images


class PerImageCifar(Dataset):
    """What a torchvision CIFAR dataset does per item: uint8 HWC array -> PIL image -> transforms."""

    def __init__(self, data: ImageTensors, transform) -> None:
        self.pixels = data.images.permute(0, 2, 3, 1).contiguous().numpy()
        self.labels = data.labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.pixels[index])), self.labels[index]


def torchvision_loader(data: ImageTensors, batch_size: int, workers: int, pin_memory: bool) -> DataLoader:
    from torchvision import transforms

    info = dataset_info("cifar10")
    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(info.mean, info.std),
    ])
    return DataLoader(
        PerImageCifar(data, transform),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
    )


def images_per_second(batches: Iterable, device: torch.device) -> float:
    """Consume one pass of `batches` on `device` and return its throughput."""
    start = time.perf_counter()
    count = 0
    last = None
    for x, y in batches:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        count += x.shape[0]
        last = x
    if device.type == "cuda":
        torch.cuda.synchronize()
    del last
    return count / (time.perf_counter() - start)


def median_rates(passes: dict[str, Callable[[int], Iterable]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median throughput of each pipeline over `repeats` passes, taken in turns so that load from other processes
    hits all pipelines alike. `passes[name](epoch)` gives the batches of one pass."""
    for make_pass in passes.values():
        images_per_second(make_pass(0), device)  # warm-up: worker start, caches, kernels
    samples = {name: [] for name in passes}
    for epoch in range(1, repeats + 1):
        for name, make_pass in passes.items():
            samples[name].append(images_per_second(make_pass(epoch), device))
    return {name: statistics.median(values) for name, values in samples.items()}


def synthetic_cifar(count: int, seed: int) -> ImageTensors:
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.integers(0, 256, size=(count, 3, 32, 32), dtype=np.uint8))
    return ImageTensors(images, torch.from_numpy(rng.integers(0, 10, size=count)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_path", default=None, help="folder with cifar-10-batches-py/ (default: synthetic data)")
    parser.add_argument("--images", type=int, default=10_000, help="number of images (synthetic or first N of CIFAR)")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the torchvision pipeline")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per pipeline (median reported)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads of this process (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    if args.data_path:
        full = load_images("cifar10", "train", args.data_path)
        data = full.subset(list(range(min(args.images, len(full)))))
        source = f"CIFAR-10 from {args.data_path}"
    else:
        data = synthetic_cifar(args.images, seed=0)
        source = "synthetic CIFAR-shaped uint8 images"
    info = dataset_info("cifar10")

    def ours(cutout: int):
        loader = TensorLoader(data, args.batch_size, device, BatchAugment.for_dataset(info, True, cutout), seed=0)

        def make_pass(epoch: int):
            loader.set_epoch(epoch)
            return iter(loader)

        return make_pass

    reference = torchvision_loader(data, args.batch_size, args.workers, pin_memory=device.type == "cuda")
    baseline_name = f"torchvision per-image, {args.workers} workers"
    passes = {
        "xautodl TensorLoader, crop+flip": ours(0),
        "xautodl TensorLoader, crop+flip+cutout16": ours(16),
        baseline_name: lambda epoch: iter(reference),
    }
    rates = median_rates(passes, args.repeats, device)
    baseline = rates[baseline_name]
    print(
        f"{len(data)} {source}, batch {args.batch_size}, device {device}, {torch.get_num_threads()} torch threads, "
        f"median of {args.repeats} passes"
    )
    print(f"{'pipeline':45s} {'images/s':>12s} {'vs torchvision':>15s}")
    for name, rate in rates.items():
        print(f"{name:45s} {rate:12,.0f} {rate / baseline:14.1f}x")


if __name__ == "__main__":
    main()
