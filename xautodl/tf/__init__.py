"""GDAS and DARTS-V1 on the NAS-Bench-201 space in TensorFlow 2 (Keras layers, `tf.function` steps).

The optional extra `pip install -e ".[tf]"` installs TensorFlow. Only this subpackage (and the entry point
`xautodl.commands.search_tf`) imports it; the PyTorch side never does. The search reuses the package's PyTorch-free
pieces and its loop: the flags of the PyTorch search, the data readers and loaders, the one search loop and epoch
skeleton (checkpoints, resume, summary), the run layout and the logger. What is TensorFlow here is the supernet
(`nas201.py`, built from `layers.py`), the two optimisers with PyTorch's update rules and the steps (`search.py`).

- `layers.py`: Keras layers computing what the PyTorch ops compute (NHWC; BatchNorm with PyTorch's conventions).
- `nas201.py`: the NAS-Bench-201 search supernet; its state dict has the PyTorch supernet's names and layouts.
- `search.py`: the Gumbel / softmax samples, SGD and Adam as `torch.optim` computes them, the weight and
  architecture steps as `tf.function`s, and the adapters the search loop talks to.
"""
from __future__ import annotations

import os

from ..errors import XAutoDLError

# TensorFlow prints C++ start-up notes (CPU features, missing CUDA drivers) on import; keep warnings and errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Load triton (PyTorch's compiler back end, which torch.optim and torch.compile import lazily) before TensorFlow: loaded
# after TensorFlow 2.21, triton's native library crashes the process (segmentation fault, with torch 2.14.1). Every
# module of this package imports TensorFlow only after this one ran.
try:
    import triton  # noqa: F401
except ImportError:
    pass

INSTALL_HINT = 'pip install -e ".[tf]" (or pip install tensorflow)'


def require_tensorflow():
    """The `tensorflow` module, or XAutoDLError saying how to install it."""
    try:
        import tensorflow as tf
    except ImportError as error:
        raise XAutoDLError(f"the TensorFlow search needs TensorFlow, which is not importable here ({error}); "
                           f"install it with {INSTALL_HINT}") from None
    return tf
