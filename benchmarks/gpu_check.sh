#!/usr/bin/env bash
# One prepared command for a machine with an NVIDIA GPU: GPU tests and GPU benchmarks, results in RESULTS_DIR.
#
#   bash benchmarks/gpu_check.sh RESULTS_DIR
#
# Needs python3 with torch (CUDA), numba-cuda, timm, torchvision, numpy, opencv, matplotlib, pytest — the
# project's GPU image has them. Anything missing can travel as wheels in benchmarks/wheels/ (ignored by
# git; `bash benchmarks/fetch_gpu_wheels.sh` fetches them, and says why each is needed): they are
# installed offline into a private target, never into the system. torch-tensorrt is
# optional: its tests and benchmark rows run only when it imports, and say why when it does not.
# The package is not pip-installed: stream_monitor/ plus kernels/ (as stream_monitor.kernels, which is
# what pyproject's package-dir does) are copied into a scratch tree with the tests and benchmarks.
# Exit status: non-zero if any test or benchmark failed. Runs in a few minutes on an H100.
set -uo pipefail
RESULTS=$(realpath -m "${1:?usage: benchmarks/gpu_check.sh RESULTS_DIR}")
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
mkdir -p "$RESULTS"
status=0

if compgen -G "$REPO/benchmarks/wheels/*.whl" >/dev/null; then
  echo "[gpu_check] installing carried wheels: $(ls "$REPO"/benchmarks/wheels/*.whl | xargs -n1 basename | tr '\n' ' ')"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/sm-site \
    "$REPO"/benchmarks/wheels/*.whl || status=1
  export PYTHONPATH=/tmp/sm-site${PYTHONPATH:+:$PYTHONPATH}
fi

WORK=$(mktemp -d /tmp/sm-gpu-check.XXXXXX)
cp -r "$REPO/stream_monitor" "$REPO/tests" "$REPO/benchmarks" "$REPO/pyproject.toml" "$WORK/"
rm -rf "$WORK/stream_monitor/kernels" "$WORK/benchmarks/wheels"
cp -r "$REPO/kernels" "$WORK/stream_monitor/kernels"
export PYTHONPATH=$WORK${PYTHONPATH:+:$PYTHONPATH}
cd "$WORK" || exit 2

"$PY" - >"$RESULTS/environment.txt" 2>&1 <<'PYEOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")
for name in ("numba", "numba_cuda", "timm", "torchvision", "numpy", "torch_tensorrt", "tensorrt"):
    try:
        print(name, __import__(name).__version__)
    except Exception as exc:
        print(name, "unavailable:", type(exc).__name__, exc)
from stream_monitor.kernels.cuda import available
print("numba cuda kernels:", available())
PYEOF
cat "$RESULTS/environment.txt"
if ! grep -q "^gpu " "$RESULTS/environment.txt" || grep -q "^gpu none" "$RESULTS/environment.txt"; then
  echo "[gpu_check] no CUDA GPU visible to torch: nothing to check here (see environment.txt)" | tee "$RESULTS/NO_GPU"
  exit 3
fi

echo "[gpu_check] GPU tests (pytest -m gpu)"
"$PY" -m pytest -q -rs -m "gpu or tensorrt" tests/engine/test_gpu.py --junitxml "$RESULTS/pytest-gpu.xml" 2>&1 \
  | tee "$RESULTS/pytest-gpu.log" || status=1
echo "[gpu_check] CUDA kernels on the real GPU, full shapes"
STREAM_MONITOR_REAL_CUDA=1 "$PY" -m pytest -q -rs tests/kernels/cuda_sim_check.py --junitxml "$RESULTS/pytest-kernels.xml" \
  2>&1 | tee "$RESULTS/pytest-kernels.log" || status=1
echo "[gpu_check] benchmarks"
BENCH_RESULTS_DIR="$RESULTS" PYTHONUNBUFFERED=1 "$PY" benchmarks/gpu_bench.py 2>&1 | tee "$RESULTS/gpu_bench.log" || status=1

echo "[gpu_check] done, status $status; results in $RESULTS"
exit $status
