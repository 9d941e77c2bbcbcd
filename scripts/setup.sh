#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv: CPU is the embedded default.
# torch/torchvision are pinned to the builds this project is tested with; everything else comes from
# pyproject.toml. Re-running is cheap: pip skips what is already installed.
#
#   scripts/setup.sh             runtime + test dependencies
#   scripts/setup.sh --system    also the Debian packages the integration tests drive for real
#                                (chromium for the MJPEG page, prometheus/promtool, systemd-analyze for
#                                the unit files); installs them as root, and fails naming them (with
#                                the apt-get command) where it cannot
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}


install_system_packages() {
  local missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
  command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)  # verifies the deploy/systemd units
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    # The integration tests drive these for real and fail without them: say so now, not after 10 minutes.
    echo "[setup] ERROR: missing ${missing[*]}, needed by the integration tests (real browser, real" >&2
    echo "[setup]        Prometheus/promtool, systemd-analyze). Installing them needs root and apt-get:" >&2
    echo "[setup]          sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    echo "[setup]        then run this again." >&2
    exit 1
  fi
  echo "[setup] installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if [ "${1:-}" = "--system" ]; then
  install_system_packages
fi
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
