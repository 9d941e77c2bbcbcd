"""Which map a stream's frame shows: the one drawn on it, or the stream's latest scene map standing in.

The map budget (explanations/pacing.py) draws the scene map on only as many alerting frames as 10 % of
the engine's time pays for. Left alone, the skipped frames of an alert would show the coarse deviation
heatmap between two scene maps, and the overlay would flicker between two kinds of map. Instead, an
alerting frame without a fresh map shows its stream's latest drawn one while that is at most `hold_s`
old (capture time; the view moves little in a fraction of a second), and the deviation heatmap after
that. A frame below the threshold shows its own deviation heatmap, as without the scene map, and a frame
that shows another map (an enrolled site's, where its evidence fired) keeps it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MapCarry"]


class MapCarry:
    """Per stream, the latest drawn scene map and its frame's capture time; see the module docstring."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = float(hold_s)
        self._latest: dict[str, tuple[np.ndarray, float]] = {}

    def heatmap(self, stream: str, scored: Any, i: int, t_capture: float) -> tuple[np.ndarray | None, str | None]:
        """The map row i of `scored` (a ScoredBatch) shows on `stream`'s frame captured at `t_capture`, and
        which (observability.metrics.MAP_KINDS: drawn, carried, expired), or None for a frame that had no
        scene map due (below the threshold, another map, no scene map on this scorer)."""
        heat = scored.heatmaps[i] if scored.heatmaps is not None else None
        drawn, skipped = getattr(scored, "map_drawn", None), getattr(scored, "map_skipped", None)
        if heat is None or drawn is None or skipped is None:
            return heat, None
        if drawn[i]:
            self._latest[stream] = (heat, t_capture)
            return heat, "drawn"
        if not skipped[i]:
            return heat, None
        latest = self._latest.get(stream)
        if latest is not None and 0.0 <= t_capture - latest[1] <= self.hold_s:
            return latest[0], "carried"
        return heat, "expired"

    def forget(self, stream: str) -> None:
        """Drop a stream's latest map (its signal was lost: the next view is another one)."""
        self._latest.pop(stream, None)
