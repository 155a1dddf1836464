"""Writers of tiny datasets in the exact on-disk formats the real ones use.

Every writer returns the root folder it wrote, ready to pass as `data_path`. Images are random uint8 drawn from
`seed`, so two calls with the same arguments write identical files. Tests read the files back with `pickle` when they
need the exact pixels or labels.

The real split files index 50,000 CIFAR images; a tiny dataset needs a tiny split file (`write_split_file`) passed as
`split_file`.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

CIFAR10_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
IMAGENET16_TRAIN_BATCHES = [f"train_data_batch_{i}" for i in range(1, 11)]


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _random_images(rng: np.random.Generator, count: int, side: int) -> np.ndarray:
    """`count` images as rows of channel-major pixels, as the pickles store them."""
    return rng.integers(0, 256, size=(count, 3 * side * side), dtype=np.uint8)


def _labels_covering(rng: np.random.Generator, count: int, num_classes: int) -> list[int]:
    """Labels that use every class when `count` allows it, in random order."""
    labels = np.arange(count) % num_classes
    return [int(v) for v in rng.permutation(labels)]


def write_cifar10(root: str | Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> Path:
    """Write `root/cifar-10-batches-py/` with data_batch_1..5, test_batch and batches.meta.

    The `n_train` training images are spread over the five batches in order, as in the real set.
    """
    root = Path(root)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = _random_images(rng, n_train, 32)
    labels = _labels_covering(rng, n_train, 10)
    bounds = np.linspace(0, n_train, len(CIFAR10_TRAIN_BATCHES) + 1).astype(int)
    for name, start, stop in zip(CIFAR10_TRAIN_BATCHES, bounds[:-1], bounds[1:]):
        _dump(folder / name, {
            "batch_label": f"training batch {name[-1]} of 5",
            "labels": labels[start:stop],
            "data": images[start:stop],
            "filenames": [f"image_{i}.png" for i in range(start, stop)],
        })
    _dump(folder / "test_batch", {
        "batch_label": "testing batch 1 of 1",
        "labels": _labels_covering(rng, n_test, 10),
        "data": _random_images(rng, n_test, 32),
        "filenames": [f"test_{i}.png" for i in range(n_test)],
    })
    _dump(folder / "batches.meta", {
        "num_cases_per_batch": int(bounds[1]),
        "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
        "num_vis": 3072,
    })
    return root


def write_cifar100(root: str | Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> Path:
    """Write `root/cifar-100-python/` with train, test and meta (`fine_labels` 0..99, `coarse_labels` 0..19)."""
    root = Path(root)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, count in (("train", n_train), ("test", n_test)):
        fine = _labels_covering(rng, count, 100)
        _dump(folder / name, {
            "filenames": [f"{name}_{i}.png" for i in range(count)],
            "batch_label": f"{name}ing batch 1 of 1",
            "fine_labels": fine,
            "coarse_labels": [label // 5 for label in fine],
            "data": _random_images(rng, count, 32),
        })
    _dump(folder / "meta", {
        "fine_label_names": [f"fine_{i}" for i in range(100)],
        "coarse_label_names": [f"coarse_{i}" for i in range(20)],
    })
    return root


def _imagenet16_labels(rng: np.random.Generator, count: int) -> list[int]:
    """1-based labels: about half in the kept range 1..120, the rest in 121..1000 (dropped by the reader)."""
    kept = rng.integers(1, 121, size=count)
    dropped = rng.integers(121, 1001, size=count)
    labels = np.where(np.arange(count) % 2 == 0, kept, dropped)
    return [int(v) for v in labels]


def write_imagenet16(root: str | Path, n_per_batch: int = 8, n_val: int = 16, seed: int = 0) -> Path:
    """Write `root/train_data_batch_1..10` and `root/val_data`: `data` N x 768 uint8, `labels` 1-based in 1..1000.

    Every other image has a label above 120, so the reader's 120-class filter has something to drop.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in IMAGENET16_TRAIN_BATCHES:
        _dump(root / name, {
            "data": _random_images(rng, n_per_batch, 16),
            "labels": _imagenet16_labels(rng, n_per_batch),
            "mean": np.zeros(768, dtype=np.float64),
        })
    _dump(root / "val_data", {"data": _random_images(rng, n_val, 16), "labels": _imagenet16_labels(rng, n_val)})
    return root


def write_image_folder(root: str | Path, classes: int = 3, per_class: int = 4, size: int = 20, seed: int = 0) -> Path:
    """Write `root/{train,val}/class_<k>/img_<i>.png`: `per_class` RGB PNGs of `size` x `size` per class and split."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for k in range(classes):
            folder = root / split / f"class_{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"img_{i}.png")
    return root


def write_split_file(path: str | Path, mapping: dict[str, list[int]]) -> Path:
    """Write a split file in the `{"key": ["int", ["0", "5", ...]]}` format of configs/nas-benchmark/*.txt."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f'  {json.dumps(key)} : {json.dumps(["int", [str(int(i)) for i in indices]])}' for key, indices in mapping.items()
    ]
    path.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    return path
