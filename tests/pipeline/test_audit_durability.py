"""Durability of the audit log, checked where it is decided: every record is written whole and fsynced
on the log's own descriptor before `write` returns, and a failing fsync (a disk that cannot persist)
reaches the caller instead of being swallowed.

A SIGKILL test cannot show this (the page cache survives the death of a process; only a power cut would
lose an unsynced record), so these tests watch the system calls themselves.
"""

import errno
import os

import pytest

from stream_monitor.pipeline import audit as audit_module
from stream_monitor.pipeline.audit import AuditLog, read_audit_log


class _SyscallLog:
    """Records os.write / os.fsync calls on the audit module's `os`, then performs them."""

    def __init__(self, monkeypatch, fail_fsync: bool = False) -> None:
        self.calls: list[tuple[str, int]] = []
        real_write, real_fsync = os.write, os.fsync

        def write(fd, data):
            self.calls.append(("write", fd))
            return real_write(fd, data)

        def fsync(fd):
            self.calls.append(("fsync", fd))
            if fail_fsync:
                raise OSError(errno.EIO, "Input/output error")
            return real_fsync(fd)

        monkeypatch.setattr(audit_module.os, "write", write)
        monkeypatch.setattr(audit_module.os, "fsync", fsync)


def test_every_record_is_fsynced_on_the_log_before_write_returns(tmp_path, monkeypatch):
    log = AuditLog(tmp_path / "a.jsonl", "x")
    syscalls = _SyscallLog(monkeypatch)
    for i in range(3):
        before = len(syscalls.calls)
        log.write("alert_start", alert_id=i)
        during = syscalls.calls[before:]
        # Within this one call: the record's bytes reach the log's descriptor, then that descriptor is
        # fsynced — last, so nothing of the record is left unsynced when write() returns.
        assert during and during[-1] == ("fsync", log._fd), during
        assert all(fd == log._fd for _, fd in during) and ("write", log._fd) in during
    log.close()
    assert [r["alert_id"] for r in read_audit_log(tmp_path / "a.jsonl")] == [0, 1, 2]


def test_a_new_log_file_is_made_durable_in_its_folder(tmp_path, monkeypatch):
    # The file's directory entry must be fsynced too, or a power cut can lose the whole new file.
    syscalls = _SyscallLog(monkeypatch)
    AuditLog(tmp_path / "new.jsonl", "x").close()
    assert sum(1 for name, _ in syscalls.calls if name == "fsync") >= 2  # the folder, then the file at close


def test_a_failing_fsync_reaches_the_caller(tmp_path, monkeypatch):
    log = AuditLog(tmp_path / "a.jsonl", "x")
    _SyscallLog(monkeypatch, fail_fsync=True)
    with pytest.raises(OSError) as error:
        log.write("alert_start", alert_id=1)
    assert error.value.errno == errno.EIO
    assert log.records == 0  # not counted as persisted
