"""The one place that picks a scorer for a `model.backend` value (see contract.py)."""

from __future__ import annotations

from ..models.base import ClassifierAdapter
from ..nero import NeroDetector
from .backends import EngineOptions
from .contract import REFERENCE_BACKEND, FrameScorer
from .fast import create_scorer
from .scorer import Scorer

__all__ = ["build_scorer"]


def build_scorer(model: ClassifierAdapter, detector: NeroDetector, *, backend: str = "auto",
                 precision: str = "fp32", threads: int | None = None, top_n: int = 5,
                 heatmaps: bool = True, explanation=None, alert=None, map_budget=None) -> FrameScorer:
    """The scorer for a `model.backend` value: the reference `Scorer` for "torch-cpu-reference", else the
    fast engine on the named (or, for "auto", the best available) back-end. `explanation`: the detector's
    explanation assets (explanations.assets.load_beside), when it has them; `alert`: the served alert
    detector the artifact carries (baselines.serving.load_alert_detector), if any; `map_budget`: the scene
    map's pacing on the live path (explanations.pacing.MapBudget; None: every alerting frame)."""
    if backend == REFERENCE_BACKEND:
        return Scorer(model, detector, top_n=top_n, heatmaps=heatmaps, explanation=explanation, alert=alert,
                      map_budget=map_budget)
    return create_scorer(model, detector, backend, top_n=top_n, heatmaps=heatmaps,
                         options=EngineOptions(precision=precision, threads=threads), explanation=explanation,
                         alert=alert, map_budget=map_budget)
