"""Scoring kernels (NumPy reference, Numba CPU, Numba CUDA); installed as `stream_monitor.kernels`."""
