"""A whole dataset split held as tensors: uint8 images and int64 labels."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ImageTensors:
    """`images`: uint8 [N, 3, H, W]; `labels`: int64 [N] (0-based class indices)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N, 3, H, W], got {self.images.dtype} {list(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"expected {self.images.shape[0]} labels, got shape {list(self.labels.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, indices: torch.Tensor | list[int]) -> ImageTensors:
        """The images and labels at `indices`, in that order."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return ImageTensors(self.images[index], self.labels[index])
