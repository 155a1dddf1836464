"""What the rest of the code needs to know about each dataset: classes, image size, normalisation, augmentation."""
from __future__ import annotations

from dataclasses import dataclass

from xautodl.datasets.digits import DIGITS_IMAGE_SIZE
from xautodl.errors import DataError


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset.

    `mean` and `std` are per-channel, in 0-1 units (as torchvision's Normalize takes them); `crop_padding` is the
    zero padding of the training random crop (0: no crop); `flip` says whether training flips images horizontally.
    """

    name: str
    num_classes: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_padding: int
    flip: bool = True


def _per_255(values: tuple[float, float, float]) -> tuple[float, float, float]:
    return tuple(v / 255 for v in values)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Images of user folders are resized to this side unless the caller asks otherwise.
FOLDER_IMAGE_SIZE = 32

_INFOS = {
    "cifar10": DatasetInfo("cifar10", 10, 32, _per_255((125.3, 123.0, 113.9)), _per_255((63.0, 62.1, 66.7)), 4),
    "cifar100": DatasetInfo("cifar100", 100, 32, _per_255((129.3, 124.1, 112.4)), _per_255((68.2, 65.4, 70.4)), 4),
    "ImageNet16-120": DatasetInfo(
        "ImageNet16-120", 120, 16, _per_255((122.68, 116.66, 104.01)), _per_255((63.22, 61.26, 65.09)), 2
    ),
    "imagenet-1k": DatasetInfo("imagenet-1k", 1000, 224, IMAGENET_MEAN, IMAGENET_STD, 0),
    # Digits are grey (the three channels are equal), 16x16 (see datasets/digits.py); the statistics are those of the
    # training split. A mirrored digit is a different symbol, so no flips.
    "digits": DatasetInfo("digits", 10, DIGITS_IMAGE_SIZE, (0.305, 0.305, 0.305), (0.319, 0.319, 0.319), 2, flip=False),
    # User photos: ImageNet statistics are the usual choice for natural images; num_classes is filled in from the
    # class folders when the data is read.
    "folder": DatasetInfo("folder", 0, FOLDER_IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD, FOLDER_IMAGE_SIZE // 8),
}

DATASET_NAMES = tuple(_INFOS)


def dataset_info(name: str) -> DatasetInfo:
    """Facts about dataset `name` (one of DATASET_NAMES); DataError listing the known names otherwise.

    For `folder` the class count is only known once the folder is read: `num_classes` is 0 here and the loaders
    return the info with the real count.
    """
    if name not in _INFOS:
        raise DataError(f"unknown dataset {name!r}: expected one of {', '.join(DATASET_NAMES)}")
    return _INFOS[name]
