"""Deployment thresholds calibrated on ID validation scores.

The rule is the one the NERO paper's FPR95 uses (docs/NERO.md §7): with n sorted ID scores,
τ = sorted(s)[floor(t·n)], so at least a share t of ID frames score ≤ τ and are not flagged. A frame is
flagged when its score is strictly above τ — the same reading the paper's FPR95 gives, so the reported
FPR95 is what the on-screen alert does at this threshold.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import InputError

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


@dataclass(frozen=True)
class Calibration:
    """threshold (score units; flag when score > threshold), the target and achieved ID TPR, the number
    of validation scores, and ID score quantiles {q: value} for drift checks later."""

    threshold: float
    target_tpr: float
    achieved_tpr: float
    n_validation: int
    quantiles: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Calibration":
        return cls(**values)


def threshold_at_tpr(id_scores: np.ndarray, target_tpr: float) -> float:
    """τ = sorted(id_scores)[floor(target_tpr · n)] (clipped to the last score)."""
    ordered = np.sort(np.asarray(id_scores, dtype=np.float64))
    index = min(math.floor(target_tpr * len(ordered)), len(ordered) - 1)
    return float(ordered[index])


def calibrate_threshold(id_scores: np.ndarray, target_tpr: float = 0.95) -> Calibration:
    """Calibrate on (N,) ID validation scores, higher = more OOD."""
    scores = np.asarray(id_scores, dtype=np.float64)
    if scores.ndim != 1 or len(scores) == 0:
        raise InputError(f"calibration needs a non-empty 1-D array of ID scores, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise InputError("calibration scores contain NaN or inf")
    if not 0 < target_tpr < 1:
        raise InputError(f"target_tpr must be in (0, 1), got {target_tpr}")
    if len(scores) < math.ceil(1 / (1 - target_tpr)):
        # Below this many scores the threshold is simply the maximum: say so instead of pretending.
        warnings.warn(
            f"only {len(scores)} validation scores: too few to place a {target_tpr:.0%} threshold "
            "below the maximum ID score",
            stacklevel=2,
        )
    threshold = threshold_at_tpr(scores, target_tpr)
    quantiles = {f"{q:g}": float(np.quantile(scores, q)) for q in QUANTILES}
    achieved = float(np.mean(scores <= threshold))
    return Calibration(threshold, float(target_tpr), achieved, int(len(scores)), quantiles)
