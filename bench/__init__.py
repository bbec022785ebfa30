"""Benchmarks of pytts: the compiled kernels against the NumPy reference and a numba port."""
