"""Detector artifacts: one file holding every fitted array and its metadata, with no pickle.

Format: a NumPy `.npz` (a zip of `.npy` arrays, read with `allow_pickle=False`) whose member
`__metadata__` is UTF-8 JSON stored as a uint8 array. The metadata carries the format version, the
SHA-256 of every array (so a flipped bit is caught, not scored with), and whatever the detector adds.
Writes are atomic (temporary file, fsync, rename): a full disk or a crash never leaves half an artifact
where the old one was.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import ArtifactError

FORMAT_VERSION = 1
METADATA_KEY = "__metadata__"


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and little-endian bytes."""
    canonical = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    digest = hashlib.sha256(f"{canonical.dtype.str}{canonical.shape}".encode())
    digest.update(canonical.tobytes())
    return digest.hexdigest()


def head_sha256(weight: np.ndarray, bias: np.ndarray) -> str:
    """Fingerprint of a classifier head, independent of the dtype it came in (hashed as float64)."""
    digest = hashlib.sha256()
    for part in (weight, bias):
        digest.update(array_sha256(np.asarray(part, dtype=np.float64)).encode())
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions that produced an artifact, recorded for provenance."""
    return {"stream_monitor": __version__, "numpy": np.__version__, "python": platform.python_version()}


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_artifact(path: str | os.PathLike, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> Path:
    """Write arrays plus JSON metadata to `path` atomically; returns the path written."""
    path = Path(path)
    if METADATA_KEY in arrays:
        raise ValueError(f"{METADATA_KEY!r} is reserved")
    meta = dict(metadata)
    meta["format_version"] = FORMAT_VERSION
    meta["array_sha256"] = {name: array_sha256(np.asarray(a)) for name, a in arrays.items()}
    encoded = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **{METADATA_KEY: encoded}, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except OSError as exc:
        Path(tmp_name).unlink(missing_ok=True)
        raise ArtifactError(f"could not write detector artifact {path}: {exc.strerror or exc}") from exc
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def read_artifact(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify an artifact: readable, complete, not from a newer format, arrays intact."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"detector artifact {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        raise ArtifactError(
            f"{path} is not a readable detector artifact (truncated or corrupt: {exc}); "
            "re-create it with `stream-monitor fit`"
        ) from exc
    if METADATA_KEY not in arrays:
        raise ArtifactError(f"{path} has no {METADATA_KEY} entry: not a stream-monitor artifact")
    try:
        metadata = json.loads(arrays.pop(METADATA_KEY).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: metadata is not valid JSON ({exc})") from exc
    version = metadata.get("format_version")
    if not isinstance(version, int):
        raise ArtifactError(f"{path}: metadata has no integer format_version")
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"{path} uses artifact format {version}, newer than this stream-monitor "
            f"{__version__} reads (≤ {FORMAT_VERSION}); upgrade stream-monitor"
        )
    _verify_checksums(path, arrays, metadata.get("array_sha256", {}))
    return arrays, metadata


def _verify_checksums(path: Path, arrays: dict[str, np.ndarray], expected: dict[str, str]) -> None:
    missing = sorted(set(expected) - set(arrays))
    if missing:
        raise ArtifactError(f"{path} is missing array(s) {', '.join(missing)}")
    for name, digest in expected.items():
        if array_sha256(arrays[name]) != digest:
            raise ArtifactError(f"{path}: array {name!r} does not match its checksum (corrupt file)")
