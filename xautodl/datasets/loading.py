"""`load_images`: one split of a dataset as uint8 tensors, whatever its on-disk format."""
from __future__ import annotations

import os

from xautodl.datasets.digits import load_digits_split
from xautodl.datasets.folder import load_image_folder
from xautodl.datasets.info import FOLDER_IMAGE_SIZE, dataset_info
from xautodl.datasets.pickled import load_cifar, load_imagenet16
from xautodl.datasets.roots import data_root, unreadable_message
from xautodl.datasets.tensors import ImageTensors
from xautodl.errors import DataError

SPLITS = ("train", "test")


def load_images(
    name: str,
    split: str,
    data_path: str | os.PathLike | None = None,
    download: bool = False,
    image_size: int = FOLDER_IMAGE_SIZE,
) -> ImageTensors:
    """Split `split` ("train" or "test") of dataset `name` as uint8 images [N, 3, H, W] and int64 labels [N].

    Datasets: cifar10, cifar100, ImageNet16-120 (test = its val_data), digits, folder (test = val/; images resized
    to `image_size`). The files are read from `data_path`, else from $TORCH_HOME (see `roots.data_root`).
    `download` fetches missing CIFAR files with torchvision.
    """
    dataset_info(name)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} of {name}: expected one of {', '.join(SPLITS)}")
    if name == "digits":
        return load_digits_split(split)
    if name == "imagenet-1k":
        raise DataError(
            "imagenet-1k is too large to hold in memory: it is read from its class folders by "
            "get_train_test_loaders, not by load_images"
        )
    root = data_root(name, data_path)
    try:
        if name in ("cifar10", "cifar100"):
            return load_cifar(name, split, root, download)
        if name == "ImageNet16-120":
            return load_imagenet16(split, root)
        return load_image_folder(root, split, image_size)
    except PermissionError as error:  # a folder that cannot be listed or entered, a file that cannot be opened
        raise DataError(unreadable_message(error.filename or root)) from None
