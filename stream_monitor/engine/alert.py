"""The one engine path for any served detector: NERO explains every frame, the alert detector scores it.

Every scorer (reference and fast, any back-end) calls `apply_alert` after its NERO pass when the detector
artifact carries an alert detector (baselines/serving.py). The batch's `score` and `over_threshold` then
come from the alert detector on the same pooled features; NERO's score moves to `nero_score`, and its
parts, neurons and heatmap stay the explanation. A frame whose features are not finite keeps a NaN
score and no flag, as in the engine.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .contract import ScoredBatch

__all__ = ["AlertScoredBatch", "apply_alert"]


@dataclasses.dataclass(frozen=True)
class AlertScoredBatch(ScoredBatch):
    """ScoredBatch whose `score` is the alert detector's (flag when > its threshold), plus NERO's own
    score `nero_score` (B,) float64, the alert detector's name and, for a z-score fusion, its components'
    standardised scores `components` (name → (B,) float64; they sum to `score`)."""

    nero_score: np.ndarray
    detector: str
    components: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def evidence_message(self, i: int) -> dict:
        """The result message's optional `evidence` map for frame i (docs/message-schema.md)."""
        fired = [self.detector] if bool(self.over_threshold[i]) else []
        return {"fired": fired, "detector": self.detector, "detector_score": _number(self.score[i]),
                "components": {name: _number(z[i]) for name, z in self.components.items()},
                "nero_score": _number(self.nero_score[i]), "site_score": None, "p_site": None, "p_nero": None}


def apply_alert(scored: ScoredBatch, features: np.ndarray, alert) -> AlertScoredBatch:
    """`scored` (NERO's pass) with the score and flags of `alert` (an AlertDetector) on `features` (B, D)."""
    features = np.asarray(features, np.float64)
    valid = np.isfinite(features).all(axis=1) & np.isfinite(scored.score)
    score = np.full(len(features), np.nan)
    components: dict[str, np.ndarray] = {}
    if valid.any():
        score[valid], valid_parts = alert.score_with_parts(features[valid])
        for name, z in valid_parts.items():
            components[name] = np.full(len(features), np.nan)
            components[name][valid] = z
    with np.errstate(invalid="ignore"):
        over = np.where(np.isfinite(score), score > alert.threshold, False)
    base = {f.name: getattr(scored, f.name) for f in dataclasses.fields(ScoredBatch)}
    base.update(score=score, over_threshold=over)
    return AlertScoredBatch(**base, nero_score=np.asarray(scored.score, np.float64), detector=alert.name,
                            components=components)


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
