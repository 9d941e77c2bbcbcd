"""The alert audit log: one JSON object per line, appended and fsynced before the call returns.

This is the one place on the live path where nothing may be lost, so it is written synchronously from
the inference loop (alert starts and ends are rare; an fsync costs milliseconds) instead of through a
queue that a crash could empty. The file is opened with O_APPEND, so concurrent writers (two monitors
misconfigured onto one file) interleave whole lines instead of overwriting each other, and the folder is
fsynced once after the file is created so that the file itself survives a power cut.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

__all__ = ["AuditLog", "read_audit_log"]

AUDIT_FORMAT = "stream-monitor/audit/v1"


class AuditLog:
    """Append-only JSON-lines log. Every record gets `format`, `time` (unix s), `host` and `instance`."""

    def __init__(self, path: str | Path, instance: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        if created:
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        self._base = {"format": AUDIT_FORMAT, "host": socket.gethostname(), "instance": instance}
        self.records = 0

    def write(self, event: str, **fields: Any) -> None:
        """Append one record and fsync it. `event` is e.g. alert_start, alert_end, session_start."""
        record = {**self._base, "event": event, "time": time.time(), **fields}
        line = (json.dumps(record, separators=(",", ":"), allow_nan=False, default=_plain) + "\n").encode()
        written = 0
        while written < len(line):  # a regular file takes it whole; a full disk raises OSError
            written += os.write(self._fd, line[written:])
        os.fsync(self._fd)
        self.records += 1

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "AuditLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
