"""The offline demo set: scikit-learn's bundled handwritten digits, upscaled to 3 x 16 x 16 uint8."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from xautodl.datasets.tensors import ImageTensors

DIGITS_TEST_SIZE = 297  # of 1797 images: 1500 for training (searches split those half/half), 297 for testing
DIGITS_SPLIT_SEED = 0
# The 8x8 digits are upscaled to 16x16 (as ImageNet16-120's images): the NAS-Bench-201 networks then run their three
# stages at 16, 8 and 4 pixels. 32x32 made every step about 3x slower on CPU for no accuracy (a fixed cell reaches 95%
# train accuracy within 75 steps at either size), and the demo's search needs the steps (see commands/demo.py).
DIGITS_IMAGE_SIZE = 16


def load_digits_split(split: str) -> ImageTensors:
    """The `split` ("train" / "test") of the digits: a fixed permutation puts 1500 images in train, 297 in test.

    The 8x8 images (values 0..16) are scaled to 0..255, upsampled bilinearly to DIGITS_IMAGE_SIZE and repeated on 3 channels.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.RandomState(DIGITS_SPLIT_SEED).permutation(len(digits.target))
    chosen = order[: len(order) - DIGITS_TEST_SIZE] if split == "train" else order[len(order) - DIGITS_TEST_SIZE :]
    small = torch.from_numpy(digits.images[chosen]).float().unsqueeze(1) * (255 / 16)
    large = F.interpolate(small, size=DIGITS_IMAGE_SIZE, mode="bilinear", align_corners=False).round().clamp(0, 255)
    images = large.to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return ImageTensors(images, torch.from_numpy(digits.target[chosen]).long())
