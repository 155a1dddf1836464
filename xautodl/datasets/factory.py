"""The loaders the experiment scripts ask for: search pairs, train / test, NAS-Bench-201 settings."""
from __future__ import annotations

import dataclasses
import os

import torch

from xautodl.datasets.augment import BatchAugment
from xautodl.datasets.folder import folder_class_names
from xautodl.datasets.imagenet import DeviceLoader, imagenet_loader
from xautodl.datasets.info import DatasetInfo, dataset_info
from xautodl.datasets.loaders import SearchLoader, TensorLoader, check_batch_size, check_rank
from xautodl.datasets.loading import load_images
from xautodl.datasets.roots import data_root
from xautodl.datasets.splits import nb201_splits, search_pair

PathLike = str | os.PathLike


def _info(name: str, data_path: PathLike | None) -> DatasetInfo:
    """dataset_info(name), with the class count of a user folder read from its train/ sub-folders."""
    info = dataset_info(name)
    if name == "folder":
        info = dataclasses.replace(info, num_classes=len(folder_class_names(data_root(name, data_path))))
    return info


def get_search_loader(
    name: str,
    batch_size: int,
    device: torch.device | str,
    seed: int,
    data_path: PathLike | None = None,
    split_file: PathLike | None = None,
    rank: int = 0,
    world_size: int = 1,
    download: bool = False,
) -> tuple[SearchLoader, DatasetInfo]:
    """The (train batch, valid batch) loader of a search on `name` (pairing: `splits.search_pair`).

    Both sides use the training augmentation and shuffle independently; an epoch is one pass over the train side.
    The valid side can also be read with the test transform (`SearchLoader.valid_batches`).
    """
    check_batch_size(batch_size)
    check_rank(rank, world_size)
    info = _info(name, data_path)
    train_side, valid_side = search_pair(name, data_path, split_file, download)
    augment = BatchAugment.for_dataset(info, train=True)
    common = dict(batch_size=batch_size, device=device, transform=augment, seed=seed, rank=rank, world_size=world_size)
    loader = SearchLoader(TensorLoader(train_side, stream=0, **common), TensorLoader(valid_side, stream=1, **common),
                          evaluation=BatchAugment.for_dataset(info, train=False))
    return loader, info


def get_train_test_loaders(
    name: str,
    batch_size: int,
    device: torch.device | str,
    seed: int,
    cutout: int = 0,
    data_path: PathLike | None = None,
    workers: int = 4,
    rank: int = 0,
    world_size: int = 1,
    download: bool = False,
) -> tuple[TensorLoader | DeviceLoader, TensorLoader | DeviceLoader, DatasetInfo]:
    """(training loader, test loader, info) over the full training and test sets of `name`.

    Training batches are augmented (`cutout` > 0 adds a cutout square of that side); test batches are only
    normalised and come in order. `workers` only matters for imagenet-1k, the one set read by a DataLoader.
    """
    check_batch_size(batch_size)
    check_rank(rank, world_size)
    info = _info(name, data_path)
    device = torch.device(device)
    if name == "imagenet-1k":
        root = data_root(name, data_path)
        common = dict(batch_size=batch_size, device=device, seed=seed, workers=workers, rank=rank,
                      world_size=world_size)
        return imagenet_loader(root, train=True, **common), imagenet_loader(root, train=False, **common), info
    train_set = load_images(name, "train", data_path, download)
    test_set = load_images(name, "test", data_path, download)
    common = dict(batch_size=batch_size, device=device, seed=seed, rank=rank, world_size=world_size)
    train_loader = TensorLoader(train_set, transform=BatchAugment.for_dataset(info, True, cutout), **common)
    test_loader = TensorLoader(test_set, transform=BatchAugment.for_dataset(info, False), shuffle=False, **common)
    return train_loader, test_loader, info


def get_nb201_loaders(
    setting: str,
    batch_size: int,
    device: torch.device | str,
    seed: int,
    data_path: PathLike | None = None,
    split_file: PathLike | None = None,
    rank: int = 0,
    world_size: int = 1,
    download: bool = False,
) -> tuple[TensorLoader, dict[str, TensorLoader], DatasetInfo]:
    """(training loader, evaluation loaders by name, info) of a NAS-Bench-201 setting (cifar10-valid, cifar10,
    cifar100, ImageNet16-120); which images each uses: `splits.nb201_splits`. `split_file` replaces the setting's
    shipped split file."""
    check_batch_size(batch_size)
    check_rank(rank, world_size)
    name, train_set, eval_sets = nb201_splits(setting, data_path, split_file, download)
    info = dataset_info(name)
    common = dict(batch_size=batch_size, device=device, seed=seed, rank=rank, world_size=world_size)
    train_loader = TensorLoader(train_set, transform=BatchAugment.for_dataset(info, True), **common)
    evaluation = BatchAugment.for_dataset(info, False)
    eval_loaders = {
        key: TensorLoader(data, transform=evaluation, shuffle=False, **common) for key, data in eval_sets.items()
    }
    return train_loader, eval_loaders, info
