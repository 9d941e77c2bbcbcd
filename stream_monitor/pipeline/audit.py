"""The alert audit log: one JSON object per line, appended and fsynced before the call returns.

This is the one place on the live path where nothing may be lost, so it is written synchronously from
the inference loop (alert starts and ends are rare; an fsync costs milliseconds) instead of through a
queue that a crash could empty. The file is opened with O_APPEND, so concurrent writers (two monitors
misconfigured onto one file) interleave whole lines instead of overwriting each other, and the folder is
fsynced once after the file is created so that the file itself survives a power cut.

Every record is chained to the one before it (audit_chain.py: `n`, `prev`, `hash`), across restarts
(a new session links to the file's last record) and rotation (`rotate_bytes`: the full file is renamed
`<name>.<UTC time>` and the new one starts with an `audit_rotated` record linked to the old file's last);
`stream-monitor audit verify` checks it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .audit_chain import ROTATED_EVENT, ChainHead, read_head, seal

__all__ = ["AuditLog", "read_audit_log"]

AUDIT_FORMAT = "stream-monitor/audit/v2"  # v2: hash-chained (n, prev, hash)


class AuditLog:
    """Append-only JSON-lines log. Every record gets `format`, `time` (unix s), `host` and `instance`."""

    def __init__(self, path: str | Path, instance: str, rotate_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rotate_bytes = rotate_bytes
        self.head = read_head(self.path) or ChainHead()  # a restart links on to the file's last record
        self._fd = self._open()
        self._base = {"format": AUDIT_FORMAT, "host": socket.gethostname(), "instance": instance}
        self.records = 0

    def _open(self) -> int:
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        if created:
            _fsync_dir(self.path.parent)
        return fd

    def write(self, event: str, **fields: Any) -> None:
        """Append one record and fsync it. `event` is e.g. alert_start, alert_end, session_start."""
        self._append(event, fields)
        if self.rotate_bytes is not None and os.fstat(self._fd).st_size >= self.rotate_bytes:
            self._rotate()

    def _append(self, event: str, fields: dict) -> None:
        record = {**self._base, "event": event, "time": time.time(), **fields}
        body = json.dumps(record, separators=(",", ":"), allow_nan=False, default=_plain).encode()
        line, head = seal(body, self.head)
        written = 0
        while written < len(line):  # a regular file takes it whole; a full disk raises OSError
            written += os.write(self._fd, line[written:])
        os.fsync(self._fd)
        self.head = head
        self.records += 1

    def _rotate(self) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        rotated = self.path.with_name(f"{self.path.name}.{stamp}")
        os.close(self._fd)
        os.rename(self.path, rotated)
        self._fd = self._open()
        self._append(ROTATED_EVENT, {"previous_file": rotated.name})

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "AuditLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fsync_dir(folder: Path) -> None:
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _plain(value: Any) -> Any:
    # NumPy scalars and paths reach here; anything else is a bug worth a clear error.
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"audit field of type {type(value).__name__} is not JSON")


def read_audit_log(path: str | Path) -> list[dict]:
    """All records of an audit log (for tests, the demo summary and incident review)."""
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]
