"""Per-frame sanity of the engine's output: a frame whose numbers are not finite is flagged, not scored.

NaN or inf reach the scores when the model's features or logits overflow (fp16 on a GPU, a corrupt
weight after a bad deployment, a frame that drives an activation past float range). A NaN score is
never over the threshold, so without this check such frames would silently count as in-distribution
and could end an alert. Flagged frames are published with `flags` (the reasons), counted in
stream_monitor_frames_flagged_total, and left out of the alert state machine.

The fused engine gives a non-finite frame a NaN score and goes on; the reference scorer raises
`InputError` for the whole batch — `score_isolating` then scores the frames one by one so that one bad
frame does not cost the others their results.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["FLAG_REASONS", "frame_flags", "score_isolating"]

FLAG_REASONS = {
    "non_finite_logits": "the class probabilities (from the logits) contain NaN or inf",
    "non_finite_score": "the NERO score or its parts (from the features) contain NaN or inf",
}


def frame_flags(scored: Any, i: int) -> list[str]:
    """Reasons frame `i` of a `ScoredBatch` cannot be trusted (empty list: it can)."""
    flags = []
    if not np.isfinite(scored.probs[i]).all():
        flags.append("non_finite_logits")
    parts = (scored.score[i], scored.distance[i], scored.bias_term[i], scored.rho[i])
    if not (np.isfinite(parts).all() and np.isfinite(scored.deviations[i]).all()):
        flags.append("non_finite_score")
    return flags


def score_isolating(score_batch: Callable[[np.ndarray], Any], images: np.ndarray) -> dict[int, tuple[Any, int]]:
    """Score a batch ((B, 3, H, W) float32, or (B, H, W, 3) uint8 for `score_uint8`); if the scorer
    refuses it (InputError: NaN or inf inside), score each frame alone. Returns {frame index: (its ScoredBatch, its row in it)}; refused frames are missing."""
    try:
        scored = score_batch(images)
        return {i: (scored, i) for i in range(len(images))}
    except InputError:
        rows = {}
        for i in range(len(images)):
            try:
                rows[i] = (score_batch(images[i:i + 1]), 0)
            except InputError:
                continue
        return rows
