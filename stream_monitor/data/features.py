"""Run a classifier over images once and keep what every detector needs: features and logits.

Offline `fit` and `eval` score a dozen methods from one extraction. Extractions are cached on disk as
`.npz` keyed by the model's weights, the preprocessing and the exact list of inputs, so re-running an
evaluation with other detector settings costs seconds, not a pass of the backbone.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import InputError
from ..models.base import ClassifierAdapter
from ..models.block_stats import forward_with_stats, supports_block_stats
from ..preprocess import INPUT_SIZE, preprocess_batch
from .images import read_image

CACHE_VERSION = 3  # 2: keyed by resolved path and content; 3: block statistics stored beside the features


@dataclass(frozen=True)
class Extracted:
    """features (N, D) float32 (the head's input), logits (N, C) float32, names (N,) of the inputs, and
    block_stats (N, S) float32 of models that support them (models/block_stats.py), else None."""

    features: np.ndarray
    logits: np.ndarray
    names: tuple[str, ...]
    block_stats: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    def extended(self) -> np.ndarray:
        """(N, D + S) `[features | block statistics]`, what block-statistics detectors read."""
        if self.block_stats is None:
            raise InputError("this model gives no block statistics (only EfficientNet adapters do), so "
                             "detectors that need them (z(bstats) fusions) cannot run on it")
        return np.concatenate([self.features, self.block_stats], axis=1)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stream-monitor" / "features"


def model_fingerprint(model: ClassifierAdapter) -> str:
    """SHA-256 over the model's architecture name and every parameter and buffer."""
    digest = hashlib.sha256(model.arch.encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.inference_mode()
def extract(
    model: ClassifierAdapter,
    frames: Iterable[tuple[str, np.ndarray]],
    total: int | None = None,
    batch_size: int = 32,
    description: str = "features",
    progress: bool = True,
) -> Extracted:
    """Features and logits (and block statistics, where the model has them) of (name, BGR uint8 frame)
    pairs, in batches, with a progress bar."""
    model.eval()
    with_stats = supports_block_stats(model)
    features, logits, stats, names = [], [], [], []
    bar = tqdm(total=total, desc=description, unit="img", disable=not progress, leave=False)
    for batch_names, batch in _batches(frames, batch_size):
        images = torch.from_numpy(preprocess_batch(batch))
        if with_stats:  # the same forward pass; the logits are head(features), as the adapter's forward
            batch_features, _, batch_stats = forward_with_stats(model, images)
            batch_logits = model.head(batch_features)
            stats.append(batch_stats.float().numpy())
        else:
            batch_logits, batch_features, _ = model(images)
        features.append(batch_features.float().numpy())
        logits.append(batch_logits.float().numpy())
        names.extend(batch_names)
        bar.update(len(batch))
    bar.close()
    if not names:
        return Extracted(np.zeros((0, model.feature_dim), np.float32), np.zeros((0, model.num_classes), np.float32), ())
    return Extracted(np.concatenate(features), np.concatenate(logits), tuple(names),
                     np.concatenate(stats) if with_stats else None)


def _batches(frames: Iterable[tuple[str, np.ndarray]], size: int) -> Iterator[tuple[list[str], list[np.ndarray]]]:
    names: list[str] = []
    images: list[np.ndarray] = []
    for name, image in frames:
        names.append(name)
        images.append(image)
        if len(images) == size:
            yield names, images
            names, images = [], []
    if images:
        yield names, images


def extract_paths(
    model: ClassifierAdapter,
    paths: Sequence[Path],
    description: str,
    cache_dir: Path | None = None,
    fingerprint: str | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> Extracted:
    """`extract` over image files, reusing a cached extraction of the same model and files."""
    cache_file = None
    if cache_dir is not None:
        fingerprint = fingerprint or model_fingerprint(model)
        cache_file = Path(cache_dir) / f"{inputs_key(fingerprint, paths)}.npz"
        if cache_file.is_file():
            with np.load(cache_file, allow_pickle=False) as cached:
                # The names as this caller spelt the paths: the key is shared by every spelling.
                stats = cached["block_stats"] if "block_stats" in cached.files else None
                return Extracted(cached["features"], cached["logits"], tuple(str(p) for p in paths), stats)
    frames = ((str(path), read_image(path)) for path in paths)
    result = extract(model, frames, len(paths), batch_size, description, progress)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        extra = {} if result.block_stats is None else {"block_stats": result.block_stats}
        np.savez(tmp, features=result.features, logits=result.logits, names=np.array(result.names), **extra)
        os.replace(tmp, cache_file)
    return result


def inputs_key(fingerprint: str, paths: Sequence[Path]) -> str:
    """Model, preprocessing and inputs (resolved path, SHA-256 of the bytes) → a short hex key.

    Resolved, so that `../shared/data/x.jpg` from two checkouts (or through a symlink) is one file; by
    content, so that a file rewritten in the same second with the same size is not served stale."""
    entries = [(str(Path(p).resolve()), _file_sha256(Path(p))) for p in paths]
    payload = json.dumps([CACHE_VERSION, INPUT_SIZE, fingerprint, entries])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
