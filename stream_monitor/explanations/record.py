"""What an alert's audit record keeps of its explanation, so that the alert can be reviewed afterwards:
where the map peaks and which neurons the score rests on (no pixels, a few numbers)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["alert_explanation", "map_peak"]


def map_peak(heat: np.ndarray | None) -> dict[str, float] | None:
    """The (h, w) map's maximum as {"y", "x"} fractions of the model's view (0–1, top-left origin, cell
    centres) and its value; None for no map or an empty one (nothing unusual to point at)."""
    if heat is None or heat.size == 0 or not np.isfinite(heat).all() or heat.max() <= 0:
        return None
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return {"y": round((y + 0.5) / heat.shape[0], 4), "x": round((x + 0.5) / heat.shape[1], 4),
            "value": round(float(heat[y, x]), 4)}


def alert_explanation(scored: Any, i: int, heat: np.ndarray | None = None) -> dict[str, Any]:
    """Fields for an alert_start record from row i of a `ScoredBatch`: map_peak (of `heat`, the map the
    frame shows, when given: the loop's `MapCarry` may show the stream's latest scene map) and top_neurons
    ({"ids", "values"}: the scorer's signed neuron values, parts of the score when explanations are on)
    and, when a served z-score fusion raised the alert, its components' standardised scores (they sum to
    the alert's score), so a review sees which evidence drove it."""
    if heat is None:
        heat = scored.heatmaps[i] if getattr(scored, "heatmaps", None) is not None else None
    values = [float(v) if np.isfinite(v) else None for v in scored.deviations[i]]
    record = {"map_peak": map_peak(heat),
              "top_neurons": {"ids": [int(n) for n in scored.top_neurons[i]], "values": values}}
    components = getattr(scored, "components", None)
    if components:
        record["components"] = {name: float(z[i]) if np.isfinite(z[i]) else None for name, z in components.items()}
    return record
