"""Search spaces: the shared op registry (`ops`), the NAS-Bench-201 space (`nas201`) and the NASNet space (`nasnet`).

Import the module of the space you need, e.g. `from xautodl.spaces import nas201`.
"""
