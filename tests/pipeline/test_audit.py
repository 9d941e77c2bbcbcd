"""The alert audit log: append-only JSON lines that survive the process."""

from __future__ import annotations

import json
import math
import os
import signal

import numpy as np
import pytest

from stream_monitor.pipeline.audit import AuditLog, read_audit_log
from stream_monitor.service import SPAWN


def test_records_are_appended_as_json_lines_with_provenance(tmp_path):
    path = tmp_path / "audit" / "alerts.jsonl"
    with AuditLog(path, "room1") as log:
        log.write("alert_start", stream="s", alert_id=1, score=np.float64(2.5))
    with AuditLog(path, "room1") as log:  # a restart appends, never truncates
        log.write("alert_end", stream="s", alert_id=1, duration_s=3.0)
    records = read_audit_log(path)
    assert [r["event"] for r in records] == ["alert_start", "alert_end"]
    assert records[0]["score"] == 2.5 and records[0]["instance"] == "room1" and records[0]["host"]
    assert records[0]["format"] == "stream-monitor/audit/v2" and records[0]["time"] <= records[1]["time"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o640"


def test_values_that_are_not_json_are_refused_not_written(tmp_path):
    with AuditLog(tmp_path / "a.jsonl", "x") as log:
        with pytest.raises(ValueError):
            log.write("alert_start", score=math.nan)
        with pytest.raises(TypeError):
            log.write("alert_start", thing=object())
    assert read_audit_log(tmp_path / "a.jsonl") == []


def _write_then_die(path: str) -> None:
    log = AuditLog(path, "x")
    log.write("alert_start", alert_id=1)
    os.kill(os.getpid(), signal.SIGKILL)  # no close(), no flush at exit


def test_a_written_record_survives_the_process_being_killed(tmp_path):
    """Each write is complete (and fsynced) before it returns: SIGKILL right after loses nothing."""
    path = tmp_path / "a.jsonl"
    process = SPAWN.Process(target=_write_then_die, args=(str(path),))
    process.start()
    process.join(60)
    assert process.exitcode == -signal.SIGKILL
    assert [json.loads(line)["event"] for line in path.read_text().splitlines()] == ["alert_start"]
