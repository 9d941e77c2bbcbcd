#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv: CPU is the embedded default.
# torch/torchvision are pinned to the builds this project is tested with; everything else comes from
# pyproject.toml. Re-running is cheap: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
echo "[setup] installing torch 2.14.1 / torchvision 0.29.1 (about a minute from a local wheel cache)"
.venv/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
echo "[setup] installing stream-monitor and its test dependencies"
.venv/bin/python -m pip install --quiet -e ".[test]"
echo "[setup] done: $(.venv/bin/stream-monitor --version)"
