"""Numba's parallel kernels share libgomp with torch and reset the process's OpenMP thread count; no test
may leave that changed for the tests after it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    import torch
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
