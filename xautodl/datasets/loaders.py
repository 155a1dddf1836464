"""Loaders over datasets held as uint8 tensors on the training device.

`TensorLoader` replaces a DataLoader for the small-image sets: the images are copied to the device once, every epoch
draws its order and its augmentation from a generator seeded with (seed, stream, epoch), and each process of a
distributed run reads its own disjoint share. `SearchLoader` pairs a train loader with a valid loader for the
bilevel search.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch

from xautodl.datasets.augment import BatchAugment, seeded_generator
from xautodl.datasets.tensors import ImageTensors
from xautodl.errors import ConfigError, DataError

# Keys that keep the random streams of the epoch order and of the augmentation apart.
ORDER, AUGMENTATION = 0, 1


def check_batch_size(batch_size: int) -> None:
    """ConfigError unless `batch_size` is a positive integer."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}")


def check_rank(rank: int, world_size: int) -> None:
    """ConfigError unless 0 <= rank < world_size."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(
            f"rank {rank} / world size {world_size}: expected world_size >= 1 and 0 <= rank < world_size"
        )


class TensorLoader:
    """Yields (x float32 normalised [B, 3, H, W], y int64 [B]) on `device`, `transform` applied to each batch.

    shuffle=True (training): each epoch is a permutation drawn from (seed, stream, epoch); with world_size > 1 the
    permutation is cut into world_size equal interleaved shares (the few images left over change every epoch), so
    every process runs the same number of steps. shuffle=False (evaluation): images in order, rank r taking images
    r, r + world_size, ...: together the processes see every image exactly once.
    `stream` separates loaders that share a seed (the two sides of a search pair).
    """

    def __init__(
        self,
        data: ImageTensors,
        batch_size: int,
        device: torch.device | str,
        transform: BatchAugment,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        stream: int = 0,
    ) -> None:
        check_batch_size(batch_size)
        check_rank(rank, world_size)
        if len(data) < world_size:
            raise DataError(
                f"a loader needs at least one image per process: {len(data)} images, {world_size} processes"
            )
        self.device = torch.device(device)
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.batch_size = batch_size
        self.transform = transform
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.stream = stream
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and augmentation the next iteration produces."""
        self.epoch = epoch

    @property
    def dataset_size(self) -> int:
        """Images in the whole dataset (all processes)."""
        return self.images.shape[0]

    @property
    def num_images(self) -> int:
        """Images this process reads per epoch (before drop_last)."""
        if self.shuffle:
            return self.dataset_size // self.world_size
        return len(range(self.rank, self.dataset_size, self.world_size))

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_images // self.batch_size
        return -(-self.num_images // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches(self.epoch)

    def batches(self, epoch: int, cycle: int = 0,
                transform: BatchAugment | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of `epoch`; `cycle` numbers further passes within the epoch (a valid side that repeats);
        `transform` replaces the loader's own (the same images in the same order, transformed otherwise)."""
        transform = self.transform if transform is None else transform
        # Every process draws the same order (and takes its own share of it), but its own augmentation.
        order_generator = seeded_generator(self.seed, self.stream, epoch, cycle, ORDER)
        augment_generator = seeded_generator(self.seed, self.stream, epoch, cycle, AUGMENTATION, self.rank)
        indices = self._indices(order_generator).to(self.device)
        for step in range(len(self)):
            chosen = indices[step * self.batch_size : (step + 1) * self.batch_size]
            yield transform(self.images[chosen], augment_generator), self.labels[chosen]

    def _indices(self, generator: torch.Generator) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.rank, self.dataset_size, self.world_size)
        order = torch.randperm(self.dataset_size, generator=generator)
        return order[: self.num_images * self.world_size][self.rank :: self.world_size]


class SearchLoader:
    """Yields (x_train, y_train, x_valid, y_valid) for the bilevel search.

    One epoch is one pass over the train side; the valid side shuffles independently (its own stream) and starts
    another pass whenever it runs out before the train side does. `evaluation` is the valid side's test transform
    (normalisation only), for the phases that score architectures on unaugmented images (`valid_batches`).
    """

    def __init__(self, train: TensorLoader, valid: TensorLoader, evaluation: BatchAugment | None = None) -> None:
        if len(valid) == 0:
            raise DataError(f"the valid side of the search has no full batch: {valid.num_images} images per process")
        self.train = train
        self.valid = valid
        self.evaluation = evaluation
        self.epoch = 0

    def valid_batches(self, epoch: int, cycle: int, augmented: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Pass `cycle` of the valid side in `epoch`, with the training augmentation or (`augmented` False) the
        test transform."""
        if augmented or self.evaluation is None:
            return self.valid.batches(epoch, cycle)
        return self.valid.batches(epoch, cycle, transform=self.evaluation)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and augmentation (both sides) the next iteration produces."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.train)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        valid_batches = itertools.chain.from_iterable(
            self.valid.batches(epoch, cycle) for cycle in itertools.count()
        )
        for (x_train, y_train), (x_valid, y_valid) in zip(self.train.batches(epoch), valid_batches):
            yield x_train, y_train, x_valid, y_valid
