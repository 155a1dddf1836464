"""The search algorithms, independent of any space: edge mixing (`mixing`), GDAS / DARTS-V1 / DARTS-V2 and their
registry (`algorithms`), the one bilevel search loop (`loop`). The entry point is `xautodl.commands.search`.

SETN, ENAS and RANDOM-NAS (`setn`, `enas`, `random_nas` over `weight_sharing`) build on the base class of
`algorithms`, which registers them: it is imported first, whichever of them a caller imports."""
from . import algorithms  # noqa: F401
