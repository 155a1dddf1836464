"""Readers of the pickled datasets: CIFAR-10/100 python batches and ImageNet16 (REFERENCE section 5).

The files are unpickled with an allow-list (numpy arrays and plain containers only), so a data file from elsewhere
cannot run code. Python-2 pickles (the real CIFAR files) are read with encoding="latin1", which gives str keys.
"""
from __future__ import annotations

import codecs
import functools
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xautodl.datasets.roots import locate, unreadable_message
from xautodl.datasets.tensors import ImageTensors
from xautodl.errors import DataError

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"

@dataclass(frozen=True)
class CifarLayout:
    """How one CIFAR set is laid out: its folder inside the root, files per split, label key, class count and the
    archive (python version) that unpacks to it."""

    folder: str
    files: dict[str, list[str]]
    label_key: str
    num_classes: int
    archive: str

    @property
    def all_files(self) -> list[str]:
        return [file for names in self.files.values() for file in names]


CIFAR_LAYOUTS = {
    "cifar10": CifarLayout(
        "cifar-10-batches-py",
        {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
        "labels",
        10,
        "cifar-10-python.tar.gz",
    ),
    "cifar100": CifarLayout(
        "cifar-100-python", {"train": ["train"], "test": ["test"]}, "fine_labels", 100, "cifar-100-python.tar.gz"
    ),
}

IMAGENET16_FILES = {"train": [f"train_data_batch_{i}" for i in range(1, 11)], "test": ["val_data"]}
IMAGENET16_KEPT_CLASSES = 120


@functools.cache
def _allowed_globals() -> dict[tuple[str, str], object]:
    """The only globals a data pickle may name: what numpy arrays and scalars need to be rebuilt."""
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _reconstruct
        allowed[(module, "scalar")] = scalar
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(text, "latin1").
    allowed[("_codecs", "encode")] = codecs.encode
    return allowed


class AllowListUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds built-in containers and only the globals in `allowed`; any other global (a class, or
    a function such as os.system that a crafted pickle would call) raises UnsafePickleError naming it."""

    def __init__(self, file, allowed: dict[tuple[str, str], object], **kwargs) -> None:
        super().__init__(file, **kwargs)
        self.allowed = allowed

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.allowed:
            raise UnsafePickleError(f"{module}.{name}")
        return self.allowed[(module, name)]


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global outside the allow-list; `str()` is the global's dotted name."""


def load_allow_listed(file, extra: dict[tuple[str, str], object] | None = None, **kwargs) -> object:
    """Unpickle `file` (a binary file object) allowing numpy arrays and scalars, built-in containers and the
    globals in `extra`; UnsafePickleError for anything else. `kwargs` go to pickle.Unpickler (e.g. encoding)."""
    allowed = {**_allowed_globals(), **(extra or {})}
    return AllowListUnpickler(file, allowed, **kwargs).load()


def read_pickle(path: Path) -> dict:
    """The dict stored in a data pickle, keys as str; DataError naming the file when it cannot be read."""
    try:
        with open(path, "rb") as f:
            content = load_allow_listed(f, encoding="latin1")
    except UnsafePickleError as exc:
        raise DataError(
            f"data file {path} is corrupt or not a dataset pickle (refusing to load {exc}: data files may only hold "
            "arrays); replace it with a fresh copy"
        ) from exc
    except PermissionError:
        raise DataError(unreadable_message(path)) from None
    except OSError as exc:
        raise DataError(f"cannot read data file {path}: {exc.strerror or exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise DataError(
            f"data file {path} is corrupt or not a dataset pickle ({exc}); replace it with a fresh copy"
        ) from exc
    if not isinstance(content, dict):
        raise DataError(f"data file {path} holds a {type(content).__name__}, expected a dict with data and labels")
    return {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in content.items()}


def _rows_and_labels(path: Path, label_key: str, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The `data` rows (N x 3*side*side uint8) and labels of one pickle, checked."""
    content = read_pickle(path)
    missing = [key for key in ("data", label_key) if key not in content]
    if missing:
        raise DataError(f"data file {path} lacks the key(s) {missing}; it has {sorted(content)}")
    rows = np.asarray(content["data"])
    labels = np.asarray(content[label_key])
    row_size = 3 * side * side
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != row_size:
        raise DataError(f"data file {path}: 'data' is {rows.dtype} {list(rows.shape)}, expected uint8 [N, {row_size}]")
    if labels.ndim != 1 or len(labels) != len(rows) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"data file {path}: expected {len(rows)} integer labels in {label_key!r}, got {labels.dtype} "
            f"{list(labels.shape)}"
        )
    return rows, labels.astype(np.int64)


def _to_tensors(rows: list[np.ndarray], labels: list[np.ndarray], side: int) -> ImageTensors:
    images = torch.from_numpy(np.concatenate(rows)).view(-1, 3, side, side)
    return ImageTensors(images, torch.from_numpy(np.concatenate(labels)))


def _missing_files(folder: Path, names: list[str]) -> list[str]:
    return [name for name in names if not (folder / name).is_file()]


def _download_cifar(name: str, root: Path) -> None:
    """Fetch the python version of CIFAR with torchvision into `root` (it unpacks the layout's folder there)."""
    from torchvision import datasets

    dataset_class = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        root.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            dataset_class(str(root), train=train, download=True)
    except Exception as exc:  # any network or disk failure ends in the same manual instructions
        raise DataError(
            f"downloading {name} into {root} failed ({type(exc).__name__}: {exc}). Without network access: fetch "
            f"{CIFAR_LAYOUTS[name].archive} (the python version) from {CIFAR_URL} and extract it in {root}"
        ) from exc


def load_cifar(name: str, split: str, root: Path, download: bool = False) -> ImageTensors:
    """CIFAR-10 or CIFAR-100 `split` ("train" / "test") from `root` (the folder holding the layout folder, or the
    layout folder itself). `download`: fetch the files with torchvision when they are missing."""
    layout = CIFAR_LAYOUTS[name]
    folder = locate([root / layout.folder, root], layout.all_files[0])
    missing = _missing_files(folder, layout.all_files)
    if missing and download:
        _download_cifar(name, root)
        folder = root / layout.folder
        missing = _missing_files(folder, layout.all_files)
    if missing and not folder.is_dir():
        raise DataError(
            f"{name} not found: the folder {folder} does not exist (it should hold {', '.join(layout.all_files)}). "
            f"Extract {layout.archive} (the python version, from {CIFAR_URL}) in {folder.parent}, pass --data_path "
            f"with the folder that holds {layout.folder}/, or pass --download to fetch it when online"
        )
    if missing:
        raise DataError(
            f"{name} is incomplete: {folder} lacks {', '.join(missing)} (expected {', '.join(layout.all_files)}). "
            f"Pass --download to fetch it when online, or extract {layout.archive} (the python version, from "
            f"{CIFAR_URL}) in {folder.parent}"
        )
    rows, labels = [], []
    for file in layout.files[split]:
        file_rows, file_labels = _rows_and_labels(folder / file, layout.label_key, 32)
        if file_labels.size and (file_labels.min() < 0 or file_labels.max() >= layout.num_classes):
            raise DataError(f"data file {folder / file} has labels outside 0..{layout.num_classes - 1}")
        rows.append(file_rows)
        labels.append(file_labels)
    return _to_tensors(rows, labels, 32)


def load_imagenet16(split: str, root: Path) -> ImageTensors:
    """ImageNet16-120 `split` from `root`: only classes 1..120 of the 1-based labels are kept, shifted to 0..119."""
    all_files = [file for names in IMAGENET16_FILES.values() for file in names]
    folder = locate([root, root / "ImageNet16"], all_files[-1])
    missing = _missing_files(folder, all_files)
    if missing and not folder.is_dir():
        raise DataError(
            f"ImageNet16-120 not found: the folder {folder} does not exist. Put the ImageNet16 files distributed "
            f"with NAS-Bench-201 / NATS-Bench ({', '.join(all_files)}) there, or pass --data_path with their folder"
        )
    if missing:
        raise DataError(
            f"ImageNet16-120 is incomplete: {folder} lacks {', '.join(missing)} (expected {', '.join(all_files)}). "
            "ImageNet16 is the 16x16 downsampled ImageNet distributed with NAS-Bench-201 / NATS-Bench; it cannot be "
            f"downloaded automatically: put its files in {folder}"
        )
    rows, labels = [], []
    for file in IMAGENET16_FILES[split]:
        file_rows, file_labels = _rows_and_labels(folder / file, "labels", 16)
        if file_labels.size and (file_labels.min() < 1 or file_labels.max() > 1000):
            raise DataError(f"data file {folder / file} has labels outside 1..1000 (ImageNet16 labels are 1-based)")
        kept = file_labels <= IMAGENET16_KEPT_CLASSES
        rows.append(file_rows[kept])
        labels.append(file_labels[kept] - 1)
    return _to_tensors(rows, labels, 16)
