"""Draw one result onto its frame: alert banner, score gauge against the threshold, class and
probability, the score's parts, the top deviating neurons, the heatmap, and stream health.

Layout (fixed, so that recordings of different sources look alike): the frame scaled to `height`
pixels with the heatmap blended over the part the model saw (the scope crop box) and a banner across
its top; a dark panel on the right with the numbers. Colours are BGR. Pure function of its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..transport.messages import decode_heatmap
from .drift_badge import draw_drift_badge
from .evidence_label import evidence_label
from .explanation_panel import alert_terms_line, draw_explanation_neurons, score_terms_line

__all__ = ["ViewerStatus", "parts_line", "render_overlay"]

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_RED, _AMBER, _GREEN = (40, 40, 220), (0, 170, 255), (60, 170, 60)
_WHITE, _GREY, _DARK = (255, 255, 255), (170, 170, 170), (32, 32, 32)
PANEL_WIDTH = 330
BANNER_HEIGHT = 46


@dataclass(frozen=True)
class ViewerStatus:
    """What the viewer knows beyond the message: results lost in transport, frames the monitor skipped."""

    lost_results: int = 0
    skipped_frames: int = 0


def _text(image: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.5, colour=_WHITE,
          thickness: int = 1) -> None:
    cv2.putText(image, text, org, _FONT, scale, colour, thickness, cv2.LINE_AA)


def _state_colour(result: dict) -> tuple[tuple[int, int, int], str]:
    alert = result["alert"]
    if result.get("flags"):  # the score is not trusted (NaN / inf): say so, whatever the alert state
        return _GREY, "SCORE INVALID  " + ", ".join(result["flags"])
    fired = evidence_label(result)
    if alert["active"]:
        since = max(0.0, result["t_capture"] - alert["since"]) if alert["since"] else 0.0
        return _RED, f"OOD ALERT #{alert['id']}  out of distribution  {since:.1f} s{fired}"
    if result["over_threshold"]:
        return _AMBER, f"above threshold  {alert['over']}/{alert['window']} frames{fired}"
    return _GREEN, "in distribution"


def _frame_part(frame: np.ndarray, result: dict, height: int, heatmap: bool) -> np.ndarray:
    h, w = frame.shape[:2]
    shown = frame.copy()
    top, bottom, left, right = result["frame"]["box"]
    heat = decode_heatmap(result["heatmap"]) if heatmap else None
    if heat is not None and bottom > top and right > left and bottom <= h and right <= w:
        region = shown[top:bottom, left:right]
        resized = cv2.resize(heat, (right - left, bottom - top), interpolation=cv2.INTER_CUBIC)
        coloured = cv2.applyColorMap(np.clip(resized * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
        shown[top:bottom, left:right] = cv2.addWeighted(region, 0.65, coloured, 0.35, 0)
    if (top, bottom, left, right) != (0, h, 0, w) and bottom > top:
        cv2.rectangle(shown, (left, top), (right - 1, bottom - 1), _GREY, 1)  # the scope crop the model saw
    scale = height / h
    shown = cv2.resize(shown, (max(1, round(w * scale)), height), interpolation=cv2.INTER_AREA)
    colour, label = _state_colour(result)
    cv2.rectangle(shown, (0, 0), (shown.shape[1], BANNER_HEIGHT), colour, -1)
    _text(shown, label, (12, 31), 0.75 if shown.shape[1] > 420 else 0.55, _WHITE, 2)
    draw_drift_badge(shown, result)
    return shown


def _gauge(panel: np.ndarray, y: int, result: dict) -> int:
    """Horizontal bar, 0 … 2× threshold; the threshold is the white tick in the middle."""
    x0, x1, bar_h = 14, PANEL_WIDTH - 14, 22
    threshold, score = result["threshold"], result["smoothed_score"]
    fraction = float(np.clip(score / (2 * threshold), 0, 1)) if threshold > 0 and np.isfinite(score) else 0.0
    colour = _RED if result["alert"]["active"] else (_AMBER if result["over_threshold"] else _GREEN)
    cv2.rectangle(panel, (x0, y), (x1, y + bar_h), (70, 70, 70), -1)
    cv2.rectangle(panel, (x0, y), (x0 + int((x1 - x0) * fraction), y + bar_h), colour, -1)
    mid = (x0 + x1) // 2
    cv2.line(panel, (mid, y - 4), (mid, y + bar_h + 4), _WHITE, 2)
    _text(panel, f"score {result['score']:.4g}", (x0, y + bar_h + 18), 0.5)
    _text(panel, f"threshold {threshold:.4g}", (mid + 6, y + bar_h + 18), 0.45, _GREY)
    return y + bar_h + 42


def _panel(height: int, result: dict, status: ViewerStatus, explanation=None) -> np.ndarray:
    panel = np.full((height, PANEL_WIDTH, 3), _DARK, np.uint8)
    y = 26
    _text(panel, f"{result['stream']}  frame {result['seq']}", (14, y), 0.55, _GREY)
    y += 34
    _text(panel, f"{result['class_name']}", (14, y), 0.7, _WHITE, 2)
    y += 24
    _text(panel, f"probability {result['probability']:.0%}", (14, y), 0.5, _GREY)
    y += 26
    _text(panel, _score_title(result.get("evidence")), (14, y), 0.5, _WHITE)
    y = _gauge(panel, y + 10, result)
    _text(panel, parts_line(result, explanation), (14, y), 0.4, _GREY)
    y += 28
    neurons = result["top_neurons"]
    if explanation is not None:
        draw_explanation_neurons(panel, y, neurons, explanation.atlas, height - 50)
    elif neurons["ids"]:
        _text(panel, "neurons deviating most", (14, y), 0.5, _WHITE)
        y += 8
        finite = [abs(d) for d in neurons["deviations"] if np.isfinite(d)]
        peak = max(finite, default=0.0) or 1.0
        for neuron, deviation in zip(neurons["ids"], neurons["deviations"]):
            if y > height - 60:
                break
            y += 20
            width = int(120 * min(abs(deviation) / peak, 1.0)) if np.isfinite(deviation) else 0
            colour = (60, 60, 230) if deviation > 0 else (230, 140, 60)
            _text(panel, f"#{neuron}", (14, y), 0.45)
            cv2.rectangle(panel, (80, y - 11), (80 + width, y - 1), colour, -1)
            _text(panel, f"{deviation:+.3g}", (208, y), 0.42, _GREY)
    footer = f"latency {result['latency_s'] * 1000:.0f} ms   batch {result['batch_size']}"
    _text(panel, footer, (14, height - 32), 0.42, _GREY)
    _text(panel, f"lost results {status.lost_results}   skipped frames {status.skipped_frames}",
          (14, height - 12), 0.42, _GREY)
    return panel


def render_overlay(frame: np.ndarray, result: dict, status: ViewerStatus = ViewerStatus(), height: int = 480,
                   heatmap: bool = True, explanation=None) -> np.ndarray:
    """A decoded version-1 result drawn with its frame.

    Args:
        frame: (H, W, 3) BGR uint8 — the frame the result is about.
        result: the result message (see docs/message-schema.md).
        status: viewer-side counters shown in the footer.
        height: output height in pixels (≥ 360 for the panel to fit).
        heatmap: blend the result's heatmap over the scope region.
        explanation: the detector's `explanations.assets.ExplanationAssets`: the panel then names the neurons by
            their training-patch thumbnails ("more of / less of") and only the score's own parts.

    Returns:
        (height, W·height/H + PANEL_WIDTH, 3) BGR uint8.
    """
    left = _frame_part(frame, result, height, heatmap)
    return np.concatenate([left, _panel(height, result, status, explanation)], axis=1)


def parts_line(result: dict, explanation=None) -> str:
    """The line under the gauge: what the gauge's score is made of, and nothing else."""
    parts, evidence = result["parts"], result.get("evidence") or {}
    if evidence.get("detector"):  # a served detector's score: its own parts, not NERO's
        return alert_terms_line(evidence)
    if explanation is not None:  # explanations.assets.ExplanationAssets knows NERO's score terms
        return score_terms_line(parts, explanation.score_terms)
    return f"distance {parts['distance']:.4g}   bias {parts['bias_term']:.3g}   rho {parts['rho']:.3f}"


def _score_title(evidence: dict | None) -> str:
    """What the gauge's score is: NERO's, an enrolled site's fused evidence, or a served detector's."""
    if not evidence:
        return "NERO OOD score"
    if evidence.get("detector"):
        return f"OOD score: {evidence['detector']}"  # NERO still explains: the parts and neurons below
    return "site + NERO evidence"
