"""Runs the Numba CUDA kernel tests (`cuda_sim_check.py`) in Numba's CUDA simulator, in a subprocess.

The simulator has to be chosen through NUMBA_ENABLE_CUDASIM=1 before numba is imported; this pytest
process imported numba long ago (the CPU kernels), so the CUDA tests run in a child pytest whose
environment sets it. CI has no GPU, so this is how the CUDA kernels' logic is tested there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CHECK = Path(__file__).with_name("cuda_sim_check.py")


def test_cuda_kernels_in_the_simulator() -> None:
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    env.pop("STREAM_MONITOR_REAL_CUDA", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=importlib",
         "--rootdir", str(CHECK.parents[2]), str(CHECK)],
        env=env, capture_output=True, text=True, timeout=300, cwd=CHECK.parents[2],
    )
    report = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, f"CUDA simulator tests failed:\n{report}"
    assert " passed" in result.stdout and " skipped" not in result.stdout.splitlines()[-1], report
