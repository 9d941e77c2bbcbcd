"""The audit log's hash chain: every record names the record before it, so an edit shows.

Each line is a JSON object that ends with `"n":N,"prev":P,"hash":H}`: `n` counts records along the
chain (0 at the first session_start; it runs on across sessions and rotated files), `prev` is the
previous record's `hash` (64 zeros for the first), and `hash` is the SHA-256 of the line's own bytes up to
the `,"hash":` that precedes it — taken from the bytes as written, so no JSON re-serialisation can
disagree with the writer. Changing a record changes its hash; to hide that, every later record would have
to be rewritten too, which is why the writer logs the chain's head (n, hash) to the service log at each
session end: the journal holds the anchor that a rewritten file would no longer match.

`verify_chain` walks one or more files (rotated ones first, oldest first) and reports the first
problem: a record altered (its hash does not match its bytes), removed (the count jumps), inserted or
reordered (the count repeats or goes back, or the link to the previous hash is broken).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["GENESIS", "ChainHead", "ChainProblem", "ChainReport", "read_head", "seal", "verify_chain"]

GENESIS = "0" * 64
ROTATED_EVENT = "audit_rotated"
_TAIL = re.compile(rb',"hash":"([0-9a-f]{64})"\}$')
_TAIL_READ = 1 << 16  # bytes read back from the end of a file to find its last record


@dataclass(frozen=True)
class ChainHead:
    """Where a chain stands: the next record's count and the last record's hash."""

    n: int = 0
    hash: str = GENESIS


def seal(body: bytes, head: ChainHead) -> tuple[bytes, ChainHead]:
    """The line (with newline) for a record `body` (a JSON object's bytes, no n/prev/hash yet) chained
    after `head`, and the head after it."""
    if not (body.startswith(b"{") and body.endswith(b"}")):
        raise ValueError("an audit record must be a JSON object")
    chained = body[:-1] + (b"," if len(body) > 2 else b"") + f'"n":{head.n},"prev":"{head.hash}"'.encode()
    digest = hashlib.sha256(chained).hexdigest()
    return chained + f',"hash":"{digest}"}}\n'.encode(), ChainHead(head.n + 1, digest)


def read_head(path: Path) -> ChainHead | None:
    """The head of the chain an existing log file ends with; None for an empty or missing file, or one
    whose last record is not chained (written before the chain existed: a new chain starts after it)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - _TAIL_READ))
            tail = handle.read()
    except FileNotFoundError:
        return None
    lines = [line for line in tail.split(b"\n") if line.strip()]
    if not lines:
        return None
    match = _TAIL.search(lines[-1])
    if match is None:
        return None
    try:
        n = int(json.loads(lines[-1])["n"])
    except (ValueError, KeyError, TypeError):
        return None
    return ChainHead(n + 1, match.group(1).decode())


@dataclass(frozen=True)
class ChainProblem:
    """The first thing wrong with a chain: `kind` is altered, missing, inserted or reordered."""

    file: str
    line: int
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.kind}: {self.detail}"


@dataclass
class ChainReport:
    """What `verify_chain` found: records checked, the head, notes, and the first problem (None = intact)."""

    records: int = 0
    head: ChainHead = field(default_factory=ChainHead)
    notes: list[str] = field(default_factory=list)
    problem: ChainProblem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _parse(raw: bytes) -> tuple[dict, str] | None:
    """(record, its stated hash) if the line is a chained record whose hash matches its bytes."""
    match = _TAIL.search(raw)
    if match is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("n"), int) or not isinstance(record.get("prev"), str):
        return None
    if hashlib.sha256(raw[:match.start()]).hexdigest() != match.group(1).decode():
        return None
    return record, match.group(1).decode()


def verify_chain(paths: Sequence[str | Path]) -> ChainReport:
    """Check the chain through `paths` in order (rotated files first). Stops at the first problem."""
    entries = []  # (file, line number, raw bytes)
    for path in paths:
        with open(path, "rb") as handle:
            entries += [(str(path), i, raw) for i, raw in enumerate(handle.read().split(b"\n"), start=1) if raw.strip()]
    stated = [_stated_n(raw) for _, _, raw in entries]
    counts: dict[int, int] = {}
    for n in stated:
        if n is not None:
            counts[n] = counts.get(n, 0) + 1
    report = ChainReport()
    previous: tuple[int, str] | None = None  # (n, hash) of the last good record
    for index, (name, number, raw) in enumerate(entries):
        parsed = _parse(raw)
        if parsed is None:
            if previous is None and _TAIL.search(raw) is None and _stated_n(raw) is None and _is_json(raw):
                report.notes.append(f"{name}:{number}: written before the hash chain (not checked)")
                continue
            kind, detail = ("altered", "the record does not match its hash (edited or truncated)")
            if _TAIL.search(raw) is None and _is_json(raw):
                kind, detail = ("inserted", "a record without the chain's hash")
            report.problem = ChainProblem(name, number, kind, detail)
            return report
        record, digest = parsed
        problem = _link_problem(record, previous, counts, lambda: set(stated[index + 1:]))
        if problem is not None:
            report.problem = ChainProblem(name, number, *problem)
            return report
        if previous is None and record["prev"] != GENESIS:
            report.notes.append(f"{name}:{number}: continues a chain from {record.get('previous_file', 'an earlier file')} "
                                f"(pass that file first to check the link)")
        previous = (record["n"], digest)
        report.records += 1
    if previous is not None:
        report.head = ChainHead(previous[0] + 1, previous[1])
    return report


def _link_problem(record: dict, previous: tuple[int, str] | None, counts: dict[int, int],
                  later: Callable[[], set[int | None]]) -> tuple[str, str] | None:
    n, prev = record["n"], record["prev"]
    if counts.get(n, 0) > 1:
        return ("inserted", f"record n={n} appears {counts[n]} times: a copy was inserted")
    if previous is None:  # the first chained record: it must start a chain or say where it continues
        if (prev == GENESIS and n == 0 and record.get("event") == "session_start") or record.get("event") == ROTATED_EVENT:
            return None
        return ("missing", f"the chain does not start here (record n={n}): the records before it were "
                "removed (a log starts with session_start, a rotated one with audit_rotated)")
    last_n, last_hash = previous
    if n == last_n + 1 and prev == last_hash:
        return None
    if n > last_n + 1:
        skipped = set(range(last_n + 1, n))
        if skipped & later():
            return ("reordered", f"record n={n} comes before n={min(skipped & later())}")
        return ("missing", f"record n={n} follows n={last_n}: {n - last_n - 1} record(s) removed before it")
    if n <= last_n:
        return ("reordered", f"record n={n} comes after n={last_n}")
    return ("altered", f"record n={n} does not link to the record before it (n={last_n}): one of the two "
            "was replaced")


def _stated_n(raw: bytes) -> int | None:
    try:
        n = json.loads(raw).get("n")
    except (ValueError, AttributeError):
        return None
    return n if isinstance(n, int) else None


def _is_json(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except ValueError:
        return False
