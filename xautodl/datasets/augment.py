"""Batch-wise augmentation of uint8 image tensors on their own device (REFERENCE section 5).

One call crops, flips, normalises and cuts out a whole batch with a few tensor operations: the batch is zero-padded
once, every image's crop window (read right to left when flipped) is gathered with one `torch.gather`, and cutout
is a mask built from per-image centres. The random choices come from a seeded CPU generator, so a given
(seed, epoch) gives the same augmentation on every device.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from xautodl.datasets.info import DatasetInfo


def seeded_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator whose stream depends only on `seed` and `keys` (e.g. stream, epoch, pass)."""
    entropy = [seed % 2**63, *(key % 2**63 for key in keys)]
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


@dataclass(frozen=True)
class AugmentParams:
    """Per-image random choices, int64 [B] each: crop window corner in the padded image, flip (0/1), cutout centre."""

    tops: torch.Tensor
    lefts: torch.Tensor
    flips: torch.Tensor
    cut_ys: torch.Tensor
    cut_xs: torch.Tensor

    def to(self, device: torch.device) -> AugmentParams:
        """The same choices on `device`, moved with one small copy."""
        stacked = torch.stack([self.tops, self.lefts, self.flips, self.cut_ys, self.cut_xs]).to(device)
        return AugmentParams(*stacked.unbind(0))


class BatchAugment:
    """uint8 [B, 3, H, W] -> float32 normalised [B, 3, H, W], with optional random crop, flip and cutout.

    Crop: zero-pad by `padding` and take an H x W window at a uniform offset (as RandomCrop(H, padding)).
    Flip: mirror horizontally with probability 1/2. Both act on the raw pixels, so padding is black before
    normalisation. Cutout (after normalisation, as in the original code): a `cutout` x `cutout` square around a
    uniform centre, clipped at the borders, set to 0. `mean` and `std` are per channel in 0-1 units.
    """

    def __init__(
        self,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        padding: int = 0,
        flip: bool = False,
        cutout: int = 0,
    ) -> None:
        self.padding = padding
        self.flip = flip
        self.cutout = cutout
        # (x / 255 - mean) / std == x * scale + shift, one fused operation per batch.
        self._scale = torch.tensor([1 / (255 * s) for s in std]).view(1, 3, 1, 1)
        self._shift = torch.tensor([-m / s for m, s in zip(mean, std)]).view(1, 3, 1, 1)
        self._constants_on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def for_dataset(cls, info: DatasetInfo, train: bool, cutout: int = 0) -> BatchAugment:
        """The training augmentation of `info` (crop, flip, optional cutout) or, with train=False, plain
        normalisation."""
        if not train:
            return cls(info.mean, info.std)
        return cls(info.mean, info.std, padding=info.crop_padding, flip=info.flip, cutout=cutout)

    @property
    def is_random(self) -> bool:
        """False when the transform only normalises."""
        return self.padding > 0 or self.flip or self.cutout > 0

    def sample(self, batch_size: int, height: int, width: int, generator: torch.Generator | None) -> AugmentParams:
        """Draw the random choices for a batch from `generator` (on the CPU)."""
        def draw(high: int) -> torch.Tensor:
            return torch.randint(0, high, (batch_size,), generator=generator)

        return AugmentParams(
            tops=draw(2 * self.padding + 1),
            lefts=draw(2 * self.padding + 1),
            flips=draw(2) if self.flip else torch.zeros(batch_size, dtype=torch.long),
            cut_ys=draw(height),
            cut_xs=draw(width),
        )

    def apply(self, images: torch.Tensor, params: AugmentParams | None) -> torch.Tensor:
        """Augment `images` with the given choices (moved to the images' device); None: normalise only."""
        if params is not None:
            params = params.to(images.device)
            if self.padding > 0 or self.flip:
                images = self._crop_and_flip(images, params)
        x = self._normalise(images)
        if params is not None and self.cutout > 0:
            x = x.masked_fill(self._cutout_mask(params, x.shape[2], x.shape[3]), 0.0)
        return x

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a batch with fresh random choices from `generator`."""
        if not self.is_random:
            return self.apply(images, None)
        batch_size, _, height, width = images.shape
        return self.apply(images, self.sample(batch_size, height, width, generator))

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        device = images.device
        if device not in self._constants_on:
            self._constants_on[device] = (self._scale.to(device), self._shift.to(device))
        scale, shift = self._constants_on[device]
        return torch.addcmul(shift, images.float(), scale)

    def _crop_and_flip(self, images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        batch, channels, height, width = images.shape
        device = images.device
        pad = self.padding
        padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
        rows = params.tops[:, None] + torch.arange(height, device=device)  # [B, H]
        columns = torch.arange(width, device=device).expand(batch, width)
        # A flipped crop reads its window's columns right to left.
        columns = torch.where(params.flips[:, None].bool(), width - 1 - columns, columns) + params.lefts[:, None]
        # One gather over each flattened padded image (several times faster than 4-d advanced indexing on CPU).
        flat_index = rows[:, :, None] * padded.shape[3] + columns[:, None, :]  # [B, H, W]
        flat_index = flat_index.view(batch, 1, height * width).expand(batch, channels, height * width)
        return torch.gather(padded.flatten(2), 2, flat_index).view(batch, channels, height, width)

    def _cutout_mask(self, params: AugmentParams, height: int, width: int) -> torch.Tensor:
        """bool [B, 1, H, W], True inside each image's cutout square."""
        half = self.cutout // 2
        device = params.cut_ys.device
        ys = torch.arange(height, device=device)
        xs = torch.arange(width, device=device)
        inside_y = (ys >= params.cut_ys[:, None] - half) & (ys < params.cut_ys[:, None] + half)
        inside_x = (xs >= params.cut_xs[:, None] - half) & (xs < params.cut_xs[:, None] + half)
        return (inside_y[:, :, None] & inside_x[:, None, :]).unsqueeze(1)

