"""Datasets: readers of the on-disk formats, batch-wise augmentation on the device, search and training loaders.

CIFAR-10/100, ImageNet16-120, the digits demo set and user image folders are held as uint8 tensors on the training
device (`TensorLoader`); imagenet-1k goes through torchvision's ImageFolder and a DataLoader (`DeviceLoader`).
"""
from __future__ import annotations

from xautodl.datasets.augment import AugmentParams, BatchAugment, seeded_generator
from xautodl.datasets.factory import get_nb201_loaders, get_search_loader, get_train_test_loaders
from xautodl.datasets.imagenet import DeviceLoader
from xautodl.datasets.info import DATASET_NAMES, DatasetInfo, dataset_info
from xautodl.datasets.loaders import SearchLoader, TensorLoader
from xautodl.datasets.loading import load_images
from xautodl.datasets.splits import NB201_SETTINGS, SPLIT_FILES, search_pair, shipped_split_file
from xautodl.datasets.tensors import ImageTensors

__all__ = [
    "AugmentParams",
    "BatchAugment",
    "DATASET_NAMES",
    "DatasetInfo",
    "DeviceLoader",
    "ImageTensors",
    "NB201_SETTINGS",
    "SPLIT_FILES",
    "SearchLoader",
    "TensorLoader",
    "dataset_info",
    "get_nb201_loaders",
    "get_search_loader",
    "get_train_test_loaders",
    "load_images",
    "search_pair",
    "seeded_generator",
    "shipped_split_file",
]
