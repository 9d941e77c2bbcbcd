"""deploy/systemd/ units: `systemd-analyze verify` (syntax, directives, executables) and its offline
security assessment, with the install prefix pointed at this checkout's venv; their command lines parse
with the real CLI; restart policy and the shutdown order the supervisor relies on. systemd is not PID 1
on the CI machine, so the units are checked, not started."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stream_monitor.cli import build_parser

from .conftest import DEPLOY

UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
PREFIX = "/opt/stream-monitor/venv"
MAX_EXPOSURE = 3.0  # systemd's scale: 0 (locked down) … 10 (unprotected); both units score ~2 today


def _directives(unit: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) in order; keys may repeat (DeviceAllow=)."""
    section, found = "", []
    for line in unit.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.append((section, key, value))
    return found


def _get(unit: Path, key: str) -> list[str]:
    return [value for _, k, value in _directives(unit) if k == key]


def _installed(unit: Path, folder: Path) -> Path:
    """The unit as installed with the package in this checkout's venv (verify checks the executables)."""
    venv = Path(sys.executable).parent.parent
    target = folder / unit.name
    target.write_text(unit.read_text().replace(PREFIX, str(venv)))
    return target


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze not installed: Debian package `systemd` (`scripts/setup.sh --system` installs it)")
    return path


def test_both_units_exist():
    assert [u.name for u in UNITS] == ["stream-monitor-overlay.service", "stream-monitor.service"]


def test_systemd_analyze_verify(tmp_path):
    units = [str(_installed(u, tmp_path)) for u in UNITS]
    result = subprocess.run([_systemd_analyze(), "verify", "--man=no", *units], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and not result.stderr.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_security_exposure_is_low(unit, tmp_path):
    result = subprocess.run([_systemd_analyze(), "security", "--offline=true", "--no-pager", str(_installed(unit, tmp_path))],
                            capture_output=True, text=True, timeout=120)
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_command_lines_parse_with_the_real_cli(unit):
    for command in _get(unit, "ExecStart") + _get(unit, "ExecStartPre"):
        words = shlex.split(command)
        assert words[0] == f"{PREFIX}/bin/stream-monitor"
        args = build_parser(only=words[1]).parse_args(words[1:])
        assert args.command == words[1]
        if getattr(args, "config", None) is not None:
            assert str(args.config) == "/etc/stream-monitor/monitor.yaml"  # ConfigurationDirectory=stream-monitor


def test_monitor_unit_restarts_and_shuts_down_in_order():
    unit = DEPLOY / "systemd" / "stream-monitor.service"
    assert _get(unit, "Restart") == ["on-failure"] and _get(unit, "StartLimitIntervalSec") == ["0"]
    # SIGTERM to the supervisor only: it stops capture before inference so open alerts are closed in
    # the audit log; control-group mode would signal every process at once.
    assert _get(unit, "KillMode") == ["mixed"] and _get(unit, "KillSignal") == ["SIGTERM"]
    assert _get(unit, "User") == ["stream-monitor"] and "video" in _get(unit, "SupplementaryGroups")[0]
    assert "char-video4linux rw" in _get(unit, "DeviceAllow")
    # Numba and TensorRT emit machine code at run time.
    assert not _get(unit, "MemoryDenyWriteExecute")
    assert _get(unit, "StateDirectory") == ["stream-monitor"]  # /var/lib/stream-monitor: the audit log


def test_overlay_unit_follows_the_monitor():
    unit = DEPLOY / "systemd" / "stream-monitor-overlay.service"
    assert _get(unit, "BindsTo") == ["stream-monitor.service"] and _get(unit, "After") == ["stream-monitor.service"]
    assert _get(unit, "Restart") == ["always"]
    assert _get(unit, "User") == _get(DEPLOY / "systemd" / "stream-monitor.service", "User")  # the ring's owner
