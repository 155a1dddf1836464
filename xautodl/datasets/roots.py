"""Where each dataset lives on disk: `--data_path` when given, else the original tool's folders under $TORCH_HOME."""
from __future__ import annotations

import os
from pathlib import Path

from xautodl.errors import DataError

# Sub-folders of $TORCH_HOME, as the original tool lays them out (REFERENCE section 1).
TORCH_HOME_FOLDERS = {
    "cifar10": "cifar.python",
    "cifar100": "cifar.python",
    "ImageNet16-120": "cifar.python/ImageNet16",
    "imagenet-1k": "ILSVRC2012",
}


def data_root(name: str, data_path: str | os.PathLike | None) -> Path:
    """The folder to read dataset `name` from.

    `data_path` wins when given. Otherwise $TORCH_HOME/<folder of the dataset>; TORCH_HOME unset is a DataError
    saying how to fix it. `folder` has no default place: it needs `data_path`.
    """
    if data_path is not None:
        return Path(data_path).expanduser()
    if name not in TORCH_HOME_FOLDERS:
        raise DataError(
            f"dataset {name!r} needs --data_path: a folder with train/ and val/ sub-folders, one sub-folder of "
            "images per class in each"
        )
    torch_home = os.environ.get("TORCH_HOME", "").strip()
    if not torch_home:
        raise DataError(
            f"dataset {name} is read from $TORCH_HOME/{TORCH_HOME_FOLDERS[name]}, but TORCH_HOME is not set: "
            f"export TORCH_HOME=/path/to/your/data (the folder holding {TORCH_HOME_FOLDERS[name].split('/')[0]}/) "
            "or pass --data_path with the dataset's folder"
        )
    return Path(torch_home).expanduser() / TORCH_HOME_FOLDERS[name]


def unreadable_message(path: str | os.PathLike) -> str:
    """One line for data that exists but that this user may not read."""
    return (f"cannot read {path}: permission denied; give your user read access to the data (chmod -R u+rX on its "
            "folder) or copy it to a folder you can read, and pass --data_path")


def locate(candidates: list[Path], marker: str) -> Path:
    """The first of `candidates` that holds the file `marker`; the first candidate (the place error messages name)
    when none does. Lets users point --data_path at either the parent folder or the dataset's own folder.
    A candidate folder this user may not list or enter is a DataError saying so (not "missing")."""
    for folder in candidates:
        if folder.is_dir() and not os.access(folder, os.R_OK | os.X_OK):
            raise DataError(unreadable_message(folder))
        if (folder / marker).is_file():
            return folder
    return candidates[0]
