"""Check the alert audit log's hash chain: every record carries the hash of the one before it, so a
record that was edited, removed, inserted or moved shows. Prints the first problem with its file and
line and exits 1; exits 0 and prints the chain's head (compare it with the "audit chain head" line the
monitor logged at its last session end) when the chain is intact.

Rotated files (`audit.rotate_bytes`) are checked together with the current one when given oldest first;
a file given alone that continues a rotated one is checked from its first record on.

examples:
  stream-monitor audit verify /var/lib/stream-monitor/alerts.jsonl
  stream-monitor audit verify /var/lib/stream-monitor/alerts.jsonl.2026* /var/lib/stream-monitor/alerts.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError
from ..pipeline.audit_chain import verify_chain


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = sub.add_parser("verify", help="check the hash chain of audit log files (oldest first)",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verify.add_argument("files", nargs="+", type=Path, help="audit log files, rotated ones first (oldest first)")


def run(args: argparse.Namespace) -> int:
    missing = [str(path) for path in args.files if not path.is_file()]
    if missing:
        raise InputError(f"no such audit log: {', '.join(missing)}")
    report = verify_chain(args.files)
    for note in report.notes:
        print(f"note: {note}")
    if report.problem is not None:
        print(f"TAMPERED: {report.problem} (after {report.records} intact record(s))", file=sys.stderr)
        return 1
    if not report.records:
        print("no chained records found", file=sys.stderr)
        return 1
    print(f"OK: {report.records} record(s), chain head n={report.head.n - 1} sha256={report.head.hash}")
    return 0
