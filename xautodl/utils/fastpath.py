"""One switch for every speed trick of the ops and the edge mixers.

Each trick (a dilated depthwise convolution on polyphase components, average pooling as a convolution, one ReLU per
cell node shared by the ops that start with one, a mixer skipping `none` ops and weights of exactly 1.0, fused
multiply-adds) keeps its textbook form beside it. `textbook()` (a context manager) or the environment variable
XAUTODL_TEXTBOOK=1 routes every one of them to that form, so tests compare the two through this switch.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

_fast = os.environ.get("XAUTODL_TEXTBOOK", "").lower() not in ("1", "true", "yes", "on")


def fast_paths() -> bool:
    """Whether the fast forms run (the default); False inside `textbook()` or with XAUTODL_TEXTBOOK=1."""
    return _fast


@contextmanager
def textbook() -> Iterator[None]:
    """Inside the block every op and mixer computes its textbook form."""
    global _fast
    previous, _fast = _fast, False
    try:
        yield
    finally:
        _fast = previous
