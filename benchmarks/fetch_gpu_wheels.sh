#!/usr/bin/env bash
# Wheels gpu_check.sh installs on the GPU machine (which has no package registry), into benchmarks/wheels/.
#
#   bash benchmarks/fetch_gpu_wheels.sh      # then carry benchmarks/wheels with the device run
#
# numpy 2.4: the GPU image (2026-11) pairs numpy 2.5.2 with numba-cuda 0.30.4, which still calls
# np.row_stack (removed in numpy 2.5) when it compiles its first kernel; numba-cuda works with 2.4.
set -euo pipefail
cd "$(dirname "$0")"
PIP=${PIP:-../.venv/bin/pip}
"$PIP" download -q --no-deps --only-binary :all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
  -d wheels numpy==2.4.6
ls -l wheels
