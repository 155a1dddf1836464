"""The benchmark's data splits (REFERENCE section 5): search pairs and NAS-Bench-201's train / eval settings.

The split files live in the package (`configs/nas-benchmark/`); a `split_file` argument replaces the shipped file
(same format, same keys), which is how tests use tiny datasets.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from xautodl.config_utils import load_config, package_config_dir
from xautodl.config_utils.loader import SPLIT_FILE
from xautodl.datasets.loading import load_images
from xautodl.datasets.tensors import ImageTensors
from xautodl.errors import DataError

# Which file defines the held-out images of each dataset, and which data set its indices refer to.
SPLIT_FILES = {
    "cifar10": "cifar-split.txt",  # train / valid halves of the CIFAR-10 training set
    "cifar100": "cifar100-test-split.txt",  # xvalid / xtest halves of the CIFAR-100 test set
    "ImageNet16-120": "imagenet-16-120-test-split.txt",  # xvalid / xtest halves of the ImageNet16-120 test set
}
NB201_SETTINGS = ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120")
HALF_SPLIT_SEED = 0

PathLike = str | os.PathLike


def shipped_split_file(name: str) -> Path:
    """The split file of dataset `name` shipped in the package."""
    return package_config_dir() / "nas-benchmark" / SPLIT_FILES[name]


def read_split(path: PathLike, keys: tuple[str, ...]) -> dict[str, list[int]]:
    """The index lists `keys` of a split file; DataError naming the file when one is missing or not integers."""
    config = load_config(path, kind=SPLIT_FILE)
    missing = [key for key in keys if key not in config]
    if missing:
        raise DataError(
            f"split file {path} lacks {', '.join(missing)}: expected the keys {', '.join(keys)} "
            f"(it has {', '.join(config) or 'none'})"
        )
    split = {}
    for key in keys:
        indices = config[key]
        if not isinstance(indices, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
            raise DataError(
                f'split file {path}: {key!r} must be a list of integer indices, as in ["int", ["0", "5", ...]]'
            )
        split[key] = indices
    return split


def take(data: ImageTensors, indices: list[int], what: str, split_path: PathLike) -> ImageTensors:
    """`data[indices]`; an index outside the data means the data is incomplete or the split file is not for it."""
    bad = [i for i in indices if not 0 <= i < len(data)]
    if bad:
        raise DataError(
            f"split file {split_path} indexes {what} up to {max(indices)}, but {what} has {len(data)} images: "
            "the data looks incomplete, or the split file does not match this dataset"
        )
    return data.subset(indices)


def half_split(count: int) -> tuple[list[int], list[int]]:
    """A fixed (seeded) random half / half split of `count` indices, as (first half, second half)."""
    order = np.random.RandomState(HALF_SPLIT_SEED).permutation(count).tolist()
    return order[: count // 2], order[count // 2 :]


def search_pair(
    name: str,
    data_path: PathLike | None = None,
    split_file: PathLike | None = None,
    download: bool = False,
) -> tuple[ImageTensors, ImageTensors]:
    """The (train side, valid side) images of a search on dataset `name`.

    cifar10: the train / valid halves of the CIFAR-10 training set (cifar-split.txt). cifar100 and ImageNet16-120:
    the whole training set / the xvalid half of the test set. digits and folder: a fixed half / half split of the
    training set, or the train / valid keys of `split_file` when given.
    """
    if name == "imagenet-1k":
        raise DataError(
            "searching on imagenet-1k is not supported: search on cifar10, cifar100, ImageNet16-120, digits or "
            "folder, then train the found cell on imagenet-1k"
        )
    train_set = load_images(name, "train", data_path, download)
    if name in ("digits", "folder") and split_file is None:
        train_indices, valid_indices = half_split(len(train_set))
        return train_set.subset(train_indices), train_set.subset(valid_indices)
    if name in ("cifar10", "digits", "folder"):
        path = split_file or shipped_split_file(name)
        split = read_split(path, ("train", "valid"))
        what = f"the {name} training set"
        return take(train_set, split["train"], what, path), take(train_set, split["valid"], what, path)
    path = split_file or shipped_split_file(name)
    split = read_split(path, ("xvalid",))
    test_set = load_images(name, "test", data_path, download)
    return train_set, take(test_set, split["xvalid"], f"the {name} test set", path)


def nb201_splits(
    setting: str,
    data_path: PathLike | None = None,
    split_file: PathLike | None = None,
    download: bool = False,
) -> tuple[str, ImageTensors, dict[str, ImageTensors]]:
    """(dataset name, training images, evaluation images by name) of a NAS-Bench-201 setting.

    cifar10-valid: train on the `train` half of cifar-split.txt, eval "valid" on its `valid` half and "test" on the
    test set. cifar10: the full training set, eval "test". cifar100 and ImageNet16-120: the full training set, eval
    "valid" on xvalid and "test" on xtest of their test split files.
    """
    if setting not in NB201_SETTINGS:
        raise DataError(f"unknown NAS-Bench-201 setting {setting!r}: expected one of {', '.join(NB201_SETTINGS)}")
    name = "cifar10" if setting == "cifar10-valid" else setting
    train_set = load_images(name, "train", data_path, download)
    test_set = load_images(name, "test", data_path, download)
    if setting == "cifar10":
        return name, train_set, {"test": test_set}
    path = split_file or shipped_split_file(name)
    if setting == "cifar10-valid":
        split = read_split(path, ("train", "valid"))
        train_part = take(train_set, split["train"], "the cifar10 training set", path)
        valid_part = take(train_set, split["valid"], "the cifar10 training set", path)
        return name, train_part, {"valid": valid_part, "test": test_set}
    split = read_split(path, ("xvalid", "xtest"))
    return name, train_set, {
        "valid": take(test_set, split["xvalid"], f"the {name} test set", path),
        "test": take(test_set, split["xtest"], f"the {name} test set", path),
    }
