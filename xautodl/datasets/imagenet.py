"""ImageNet-1k from its class folders: torchvision ImageFolder, per-image transforms, DataLoader workers.

The images are too many to hold in memory, so this is the one dataset that keeps the classic pipeline; `DeviceLoader`
wraps it so it behaves like a `TensorLoader` (device tensors, `set_epoch`, seeded order).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler

from xautodl.datasets.augment import seeded_generator
from xautodl.datasets.info import IMAGENET_MEAN, IMAGENET_STD
from xautodl.errors import DataError

# PCA of ImageNet's RGB pixels (AlexNet's "lighting" augmentation): eigenvalues and eigenvectors (columns).
LIGHTING_EIGENVALUES = (0.2175, 0.0188, 0.0045)
LIGHTING_EIGENVECTORS = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


class Lighting:
    """Adds a random combination of the RGB principal components to a [3, H, W] float image (0-1 units)."""

    def __init__(self, alpha_std: float = 0.1) -> None:
        self.alpha_std = alpha_std
        self.eigenvalues = torch.tensor(LIGHTING_EIGENVALUES)
        self.eigenvectors = torch.tensor(LIGHTING_EIGENVECTORS)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        alpha = torch.randn(3) * self.alpha_std
        rgb_shift = self.eigenvectors @ (alpha * self.eigenvalues)
        return image + rgb_shift.view(3, 1, 1)


def imagenet_transforms(train: bool):
    """Training: random-resized crop 224, flip, colour jitter, lighting; evaluation: resize 256, centre crop 224."""
    from torchvision import transforms

    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if not train:
        return transforms.Compose(
            [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), normalize]
        )
    return transforms.Compose([
        transforms.RandomResizedCrop(224),
        transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4),
        transforms.ToTensor(),
        Lighting(0.1),
        normalize,
    ])


class DeviceLoader:
    """A DataLoader whose (x, y) batches arrive on `device`.

    `set_epoch(e)` makes the next pass reproducible: the loader's generator (shuffling, and the workers' seeds for the
    random transforms) is reseeded from (seed, e, rank), and a DistributedSampler gets the epoch. With workers=0
    the transforms run in this process and draw from the global torch RNG instead (which checkpoints capture).
    """

    def __init__(self, loader: DataLoader, device: torch.device, seed: int, rank: int = 0) -> None:
        if loader.generator is None:
            raise ValueError("DeviceLoader needs a DataLoader built with generator=torch.Generator()")
        self.loader = loader
        self.device = device
        self.seed = seed
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and augmentation the next iteration produces."""
        self.epoch = epoch

    @property
    def dataset_size(self) -> int:
        """Images in the whole dataset (all processes)."""
        return len(self.loader.dataset)

    @property
    def num_images(self) -> int:
        """Images this process reads per epoch."""
        return len(self.loader.sampler)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(self.loader.sampler, DistributedSampler):
            self.loader.sampler.set_epoch(self.epoch)
        self.loader.generator.manual_seed(seeded_generator(self.seed, self.epoch, self.rank).initial_seed())
        for images, labels in self.loader:
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)


def imagenet_loader(
    root: Path,
    train: bool,
    batch_size: int,
    device: torch.device,
    seed: int,
    workers: int,
    rank: int,
    world_size: int,
) -> DeviceLoader:
    """A DeviceLoader over `root/train` (shuffled, augmented) or `root/val` (in order, evaluation transforms)."""
    from torchvision.datasets import ImageFolder

    folder = root / ("train" if train else "val")
    if not folder.is_dir():
        raise DataError(
            f"imagenet-1k folder {folder} does not exist: expected {root}/train/<class>/<image> and "
            f"{root}/val/<class>/<image> (the ILSVRC2012 images sorted into one sub-folder per class); set "
            "TORCH_HOME to the folder holding ILSVRC2012/ or pass --data_path"
        )
    try:
        dataset = ImageFolder(str(folder), transform=imagenet_transforms(train))
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"cannot read imagenet-1k images in {folder}: {exc}") from exc
    sampler = None
    if world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=train, seed=seed)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),
    )
    return DeviceLoader(loader, device, seed, rank)
