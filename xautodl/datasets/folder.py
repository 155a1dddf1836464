"""User images: `root/train/<class>/*` and `root/val/<class>/*`, decoded once into uint8 tensors of one size."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from xautodl.datasets.roots import unreadable_message
from xautodl.datasets.tensors import ImageTensors
from xautodl.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
FOLDER_SPLITS = {"train": "train", "test": "val"}


def _layout_hint(root: Path) -> str:
    return (
        f"expected {root}/train/<class>/<image> and {root}/val/<class>/<image>, one sub-folder per class with the "
        "same class names in both"
    )


def folder_class_names(root: Path) -> list[str]:
    """The class names: the sub-folders of `root/train`, sorted (their order gives the labels 0, 1, ...)."""
    train = root / "train"
    if not train.is_dir():
        raise DataError(f"image folder {train} does not exist: {_layout_hint(root)}")
    try:
        classes = sorted(entry.name for entry in train.iterdir() if entry.is_dir())
    except PermissionError:
        raise DataError(unreadable_message(train)) from None
    if not classes:
        raise DataError(f"image folder {train} has no class sub-folders: {_layout_hint(root)}")
    return classes


def _decode(path: Path, image_size: int) -> np.ndarray:
    """One image as an RGB uint8 array [size, size, 3]: shorter side resized to `image_size`, centre cropped."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # PIL only warns between its pixel limit and twice it; an image that large is refused either way.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                rgb = image.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"image {path} has more pixels than PIL's decompression-bomb limit "
                        f"({Image.MAX_IMAGE_PIXELS} pixels): a dataset image that large is damaged or crafted to "
                        "exhaust memory; remove it, or shrink it to the size you train at") from None
    except PermissionError:
        raise DataError(unreadable_message(path)) from None
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"cannot decode image {path} ({exc}); remove or replace it") from exc
    return np.asarray(ImageOps.fit(rgb, (image_size, image_size), method=Image.Resampling.BILINEAR))


def load_image_folder(root: Path, split: str, image_size: int) -> ImageTensors:
    """All images of `split` ("train" reads train/, "test" reads val/) as uint8 [N, 3, size, size] tensors."""
    classes = folder_class_names(root)
    split_dir = root / FOLDER_SPLITS[split]
    if not split_dir.is_dir():
        raise DataError(f"image folder {split_dir} does not exist: {_layout_hint(root)}")
    unknown = sorted(entry.name for entry in split_dir.iterdir() if entry.is_dir() and entry.name not in classes)
    if unknown:
        raise DataError(f"{split_dir} has classes missing from {root / 'train'}: {', '.join(unknown)}")
    pixels, labels = [], []
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        if not class_dir.is_dir():  # a class may have no images in val/
            continue
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        pixels.extend(_decode(path, image_size) for path in files)
        labels.extend([label] * len(files))
    if not pixels:
        raise DataError(
            f"image folder {split_dir} holds no images (suffixes {', '.join(sorted(IMAGE_SUFFIXES))}): "
            f"{_layout_hint(root)}"
        )
    images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous()
    return ImageTensors(images, torch.tensor(labels, dtype=torch.long))
