"""The overlay's explanation panel: the neurons the score rests on, shown as what they respond to.

With an explanation artifact (explanations/assets.py) each named neuron is a row: its three training-image
thumbnails (where it fires most), "more of" or "less of" (fires more / less than on ID frames) and a bar
of its share of the score. Without one, the older channel list ("#822 +8.3") is drawn by render.py.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["COMPONENT_WORDS", "alert_terms_line", "draw_explanation_neurons", "score_terms_line"]

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_WHITE, _GREY = (255, 255, 255), (170, 170, 170)
_MORE, _LESS = (60, 60, 230), (230, 140, 60)  # BGR: red-ish for "more of", blue-ish for "less of"
THUMB_ROW = 30  # pixels per neuron row (28 px thumbnails + 2 px gap)


def score_terms_line(parts: dict, score_terms: tuple[str, ...]) -> str:
    """The parts line under the gauge, naming only what the score is made of."""
    if tuple(score_terms) == ("residual",):
        return "score = relevance residual (unlike ID frames)"
    shown = {"distance": f"distance {parts['distance']:.4g}", "bias": f"bias {parts['bias_term']:.3g}",
             "rho": f"rho {parts['rho']:.3f}", "residual": "x residual"}
    return "   ".join(shown[t] for t in score_terms if t in shown)


# What each fused component measures, in words for the person at the tower (baselines/fusion.py names).
COMPONENT_WORDS = {"neco": "features", "bstats": "colour/texture", "nero-r": "NERO relevance",
                   "knn": "nearest frames", "residual": "feature residual", "rmds": "class distance",
                   "wrel": "relevance distance"}


def alert_terms_line(evidence: dict) -> str:
    """The parts line when a served detector raises the alert (its score is not NERO's, so NERO's parts
    would name what the gauge is not made of): a fusion's standardised components, which sum to the score,
    in words (COMPONENT_WORDS), e.g. "score = features +0.41  colour/texture +2.1"; a single detector has no
    parts to show."""
    components = evidence.get("components") or {}
    if not components:
        return f"score = {evidence.get('detector', 'served detector')}"
    terms = "  ".join(f"{COMPONENT_WORDS.get(name, name)} " + (f"{value:+.2g}" if value is not None else "n/a")
                      for name, value in components.items())
    return f"score = {terms}"


def draw_explanation_neurons(panel: np.ndarray, y: int, neurons: dict, atlas, bottom: int) -> int:
    """Rows "unusual: more of [thumbs] / less of [thumbs]" from y down to at most `bottom`; returns the
    next free y. neurons: the result's {"ids", "deviations"} (signed parts of the score)."""
    ids, values = neurons["ids"], neurons["deviations"]
    if not ids:
        return y
    cv2.putText(panel, "unusual here:", (14, y), _FONT, 0.5, _WHITE, 1, cv2.LINE_AA)
    y += 8
    finite = [abs(v) for v in values if np.isfinite(v)]
    peak = max(finite, default=0.0) or 1.0
    for neuron, value in zip(ids, values):
        if y + THUMB_ROW > bottom or not 0 <= neuron < atlas.size:
            break
        strip = atlas.strip(int(neuron))
        height = min(strip.shape[0], THUMB_ROW - 2, panel.shape[0] - y)
        width = min(strip.shape[1], panel.shape[1] - 14)
        panel[y:y + height, 14:14 + width] = strip[:height, :width]
        more = np.isfinite(value) and value > 0
        x = 14 + width + 8
        cv2.putText(panel, "more of" if more else "less of", (x, y + 18), _FONT, 0.45, _WHITE, 1, cv2.LINE_AA)
        bar = int(70 * min(abs(value) / peak, 1.0)) if np.isfinite(value) else 0
        cv2.rectangle(panel, (x + 70, y + 8), (x + 70 + bar, y + 20), _MORE if more else _LESS, -1)
        y += THUMB_ROW
    return y
