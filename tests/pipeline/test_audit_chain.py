"""The audit log's hash chain (issue 16): `stream-monitor audit verify` finds every kind of tampering.

The logs are written by the real `AuditLog` (two sessions, alerts with the fields the inference loop
writes, a rotation), then edited the way someone hiding an alert would: a value changed, a line deleted,
two lines swapped, a line copied in, a made-up line added, a record replaced by one with a correct hash of
its own. Each must be reported at the right line with the right kind, and the intact log must pass.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from stream_monitor.cli import main
from stream_monitor.pipeline.audit import AuditLog, read_audit_log
from stream_monitor.pipeline.audit_chain import GENESIS, verify_chain


def _session(log: AuditLog, first_alert: int) -> None:
    log.write("session_start", streams=["endo"], backend="torch-cpu", model="m.pt", detector="d.npz", threshold=0.77)
    for alert in (first_alert, first_alert + 1):
        log.write("alert_start", stream="endo", alert_id=alert, seq=10 * alert, score=0.91, threshold=0.77)
        log.write("alert_end", stream="endo", alert_id=alert, seq=10 * alert + 5, reason="quiet", duration_s=2.5,
                  peak_score=0.95)
    log.write("session_end", reason="shutdown", frames_processed=400)


@pytest.fixture
def audit_log(tmp_path) -> Path:
    """Two sessions of a monitor (a restart in between) in one file: 12 records."""
    path = tmp_path / "alerts.jsonl"
    for first_alert in (1, 3):
        with AuditLog(path, "room1") as log:
            _session(log, first_alert)
    return path


def _verify(capsys, *paths: Path) -> tuple[int, str]:
    code = main(["audit", "verify", *map(str, paths)])
    out = capsys.readouterr()
    return code, out.out + out.err


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_an_untouched_log_of_two_sessions_verifies_and_names_its_head(audit_log, capsys):
    records = read_audit_log(audit_log)
    assert [r["n"] for r in records] == list(range(12)) and records[0]["prev"] == GENESIS
    assert records[6]["event"] == "session_start" and records[6]["prev"] == records[5]["hash"]  # the restart links on
    code, out = _verify(capsys, audit_log)
    assert code == 0, out
    assert f"OK: 12 record(s), chain head n=11 sha256={records[-1]['hash']}" in out


def _alter(lines: list[str]) -> list[str]:
    record = json.loads(lines[4])
    assert record["event"] == "alert_end"
    lines[4] = lines[4].replace('"reason":"quiet"', '"reason":"operator"')  # hide why the alert ended
    return lines


def _reseal(lines: list[str]) -> list[str]:
    """Replace record 4 by a forged one whose own hash is right (the forger knows the scheme) but whose
    change breaks the next record's link."""
    body = lines[4].replace('"reason":"quiet"', '"reason":"operator"')
    head, _ = body.rsplit(',"hash":', 1)
    lines[4] = head + f',"hash":"{hashlib.sha256(head.encode()).hexdigest()}"}}\n'
    return lines


CASES = {
    # edit: (line reported, kind)
    "value-changed": (_alter, 5, "altered"),
    "resealed-forgery": (_reseal, 6, "altered"),
    "line-deleted": (lambda lines: lines[:3] + lines[4:], 4, "missing"),
    "first-line-deleted": (lambda lines: lines[1:], 1, "missing"),
    "lines-swapped": (lambda lines: lines[:2] + [lines[3], lines[2]] + lines[4:], 3, "reordered"),
    "line-copied-in": (lambda lines: lines[:8] + [lines[1]] + lines[8:], 2, "inserted"),
    "line-made-up": (lambda lines: lines[:5] + ['{"event":"alert_end","stream":"endo","alert_id":2}\n'] + lines[5:],
                     6, "inserted"),
    "last-line-edited": (lambda lines: lines[:-1] + [lines[-1].replace('"frames_processed":400', '"frames_processed":401')],
                         12, "altered"),
    "line-truncated": (lambda lines: lines[:6] + [lines[6][:40] + "\n"] + lines[7:], 7, "altered"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_audit_verify_reports_the_first_tampered_record_and_its_kind(audit_log, capsys, case):
    edit, line, kind = CASES[case]
    audit_log.write_text("".join(edit(_lines(audit_log))))
    code, out = _verify(capsys, audit_log)
    assert code == 1, out
    assert f"TAMPERED: {audit_log}:{line}: {kind}:" in out, out


def test_removing_the_last_records_changes_the_head_the_monitor_logged(audit_log):
    """A cut at the end leaves an intact but shorter chain; the head the monitor wrote to its journal at
    session end (n, sha256) is what shows it."""
    logged = verify_chain([audit_log]).head
    audit_log.write_text("".join(_lines(audit_log)[:-2]))
    report = verify_chain([audit_log])
    assert report.ok and report.head != logged and report.head.n == logged.n - 2


def test_rotation_keeps_the_chain_across_files(tmp_path, capsys):
    path = tmp_path / "alerts.jsonl"
    with AuditLog(path, "room1", rotate_bytes=1500) as log:
        for first_alert in (1, 3, 5):
            _session(log, first_alert)
    rotated = sorted(tmp_path.glob("alerts.jsonl.*"))
    assert len(rotated) >= 2, "the test needs at least two rotations"
    files = [*rotated, path]
    head = read_audit_log(path)[0]
    assert head["event"] == "audit_rotated" and head["previous_file"] == rotated[-1].name
    assert head["prev"] == read_audit_log(rotated[-1])[-1]["hash"]
    code, out = _verify(capsys, *files)
    assert code == 0, out
    assert f"OK: {sum(len(read_audit_log(f)) for f in files)} record(s)" in out
    code, out = _verify(capsys, path)  # the current file alone: checked, with a note on where it continues
    assert code == 0 and f"continues a chain from {rotated[-1].name}" in out
    code, out = _verify(capsys, rotated[0], *rotated[2:], path)  # a rotated file left out (or deleted)
    assert code == 1 and "missing" in out
    code, out = _verify(capsys, path, *rotated)  # the wrong order
    assert code == 1 and "reordered" in out


def test_a_log_from_before_the_chain_is_noted_and_the_chain_starts_after_it(tmp_path, capsys):
    path = tmp_path / "alerts.jsonl"
    path.write_text('{"format":"stream-monitor/audit/v1","event":"alert_start","alert_id":1}\n')
    with AuditLog(path, "room1") as log:
        _session(log, 2)
    code, out = _verify(capsys, path)
    assert code == 0 and "written before the hash chain (not checked)" in out
