"""The engine's contract with the live pipeline: what a scorer takes, what it returns, how one is built.

Every scorer — the reference `Scorer` (scorer.py) and the fast `EngineScorer` of any back-end (fast.py) —
satisfies `FrameScorer`: `score_batch(images) -> ScoredBatch`, a `threshold` and a `backend` name. The
pipeline only ever talks to this contract; `build_scorer` (build.py) is the one place that chooses which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["REFERENCE_BACKEND", "FrameScorer", "ScoredBatch"]

# `model.backend` value that selects the unfused reference scorer instead of a fast back-end.
REFERENCE_BACKEND = "torch-cpu-reference"


@dataclass(frozen=True)
class ScoredBatch:
    """One batch of B frames, scored. Arrays have B rows.

    probs (B, C) float32; predicted (B,) int class ids; score (B,) float64 (higher = more OOD);
    distance, bias_term, rho (B,) float64 — the score's parts; over_threshold (B,) bool;
    top_neurons (B, n) int and deviations (B, n) float32 against the nearest class centroid;
    heatmaps (B, h, w) float32 in [0, 1] for CNNs, else None. When the scorer has a scene map
    (explanations/distinct.py), else None: map_drawn (B,) bool, the rows whose heatmap is a scene map drawn
    on this frame; map_skipped (B,) bool, the alerting rows the map budget did not pay for (they keep the
    deviation heatmap; the loop shows their stream's latest drawn map instead, pipeline/map_carry.py).
    """

    probs: np.ndarray
    predicted: np.ndarray
    score: np.ndarray
    distance: np.ndarray
    bias_term: np.ndarray
    rho: np.ndarray
    over_threshold: np.ndarray
    top_neurons: np.ndarray
    deviations: np.ndarray
    heatmaps: np.ndarray | None
    map_drawn: np.ndarray | None = field(default=None, kw_only=True)
    map_skipped: np.ndarray | None = field(default=None, kw_only=True)

    def __len__(self) -> int:
        return len(self.score)



@runtime_checkable
class FrameScorer(Protocol):
    """What the live pipeline needs of a scorer."""

    backend: str

    @property
    def threshold(self) -> float: ...

    def score_batch(self, images: np.ndarray) -> ScoredBatch:
        """images (B, 3, 224, 224) float32, ImageNet-normalised → one `ScoredBatch` of B rows."""
        ...
