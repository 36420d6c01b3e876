"""Numba kernels of the integer op set, one module per family; each cites its DESIGN.md row and
is tested `==` against `quant.intops` (tests/test_kernels.py).

All kernels are serial `@njit(cache=True)`: on the project's 2-core VMs an OpenMP `prange` launch
costs 8-16 ms (measured), more than any of these kernels takes at sequence length 128.
"""
