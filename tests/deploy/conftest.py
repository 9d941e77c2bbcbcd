"""Shared paths and tool look-ups for the deployment tests (deploy/: Prometheus, Grafana, Kubernetes,
Docker, systemd). The tools are the real ones: Debian's `prometheus` package brings both binaries
(`scripts/setup.sh --system` installs it in CI); a test that needs one skips, saying so, where it is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus" / "rules"
RULE_TESTS = DEPLOY / "prometheus" / "tests"


def tool(name: str) -> str:
    """Path of a Debian-installed binary, or fail the test naming the way to get it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not installed (Debian package `prometheus`; `scripts/setup.sh --system` installs it)")
    return path
