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
    changes: list[str] = field(default_factory=list)  # calibrated over these capture-chain changes ([]: clean only)

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


def calibrate_over_changes(scores: dict[str, np.ndarray], target_tpr: float = 0.95) -> Calibration:
    """Calibrate on ID validation scores taken after each change a capture chain makes to a frame
    ({change: (N,) scores}, "none" = the unchanged frames): the threshold is the highest of the per-change
    thresholds, so that at most 1 − target_tpr of the validation frames are flagged after ANY one change
    (evaluation/benign_changes.py), not only when unchanged. Achieved TPR is the lowest over the changes;
    quantiles are those of the unchanged frames."""
    if "none" not in scores:
        raise InputError("calibration over changes needs the unchanged frames' scores under 'none'")
    per_change = {name: calibrate_threshold(values, target_tpr) for name, values in scores.items()}
    threshold = max(c.threshold for c in per_change.values())
    achieved = min(float(np.mean(np.asarray(v, np.float64) <= threshold)) for v in scores.values())
    clean = per_change["none"]
    return Calibration(threshold, float(target_tpr), achieved, clean.n_validation, clean.quantiles,
                       [name for name in scores if name != "none"])
