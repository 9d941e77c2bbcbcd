"""Live scoring with an enrolled site: NERO (any engine back-end) plus the site model, fused per frame.

`SiteScorer` keeps the engine contract (`score_batch(images) -> ScoredBatch`, `threshold`), so the
inference loop, alerts and drift signal need no special case: its `score` is the fused evidence
log p / log alpha, flagged above its threshold 1.0 (p < alpha), and the drift signal's "share over the
threshold" is then measured against the enrolled site's normal footage. It adds per frame the NERO
score, the site score, both p-values and which evidence fired; the heatmap is the site's patch-distance
map (distance / site threshold, clipped to [0, 1], 28 × 28) on frames where the site evidence fired.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from ..engine.contract import ScoredBatch
from ..preprocess import IMAGENET_MEAN, IMAGENET_STD
from .calibration import evidence_score
from .patch_memory import PatchFeatureExtractor, scored_cells
from .site_model import SiteModel

__all__ = ["SiteScoredBatch", "SiteScorer", "create_site_scorer", "evidence_fields", "to_uint8_rgb"]


@dataclasses.dataclass(frozen=True)
class SiteScoredBatch(ScoredBatch):
    """ScoredBatch whose `score` is the fused evidence (threshold 1.0), plus: nero_score, site_score
    (B,) float64, p_site, p_nero (B,) float64 (p_nero NaN when the fusion ignores NERO) and evidence
    (B,) tuples of the names that fired ('site', 'nero')."""

    nero_score: np.ndarray
    site_score: np.ndarray
    p_site: np.ndarray
    p_nero: np.ndarray
    evidence: list

    def evidence_message(self, i: int) -> dict:
        """The result message's optional `evidence` map for frame i (docs/message-schema.md)."""
        return evidence_fields(self, i)


def to_uint8_rgb(images: np.ndarray) -> np.ndarray:
    """(B, 3, H, W) float32 ImageNet-normalised → (B, H, W, 3) uint8 RGB (the inverse of normalize_uint8,
    exact up to rounding)."""
    rgb = np.moveaxis(images, 1, -1) * IMAGENET_STD + IMAGENET_MEAN
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


class SiteScorer:
    """NERO scorer + enrolled site model. See the module docstring."""

    threshold = 1.0

    def __init__(self, inner: Any, site: SiteModel, extractor: PatchFeatureExtractor) -> None:
        self.inner, self.site, self.extractor = inner, site, extractor
        self.backend = f"{getattr(inner, 'backend', type(inner).__name__)}+site"
        self.nero_threshold = float(getattr(inner, "threshold", np.nan))
        self.site_threshold = site.site_threshold

    def score_batch(self, images: np.ndarray) -> SiteScoredBatch:
        nero = self.inner.score_batch(images)
        maps = self.extractor(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))
        valid = scored_cells(to_uint8_rgb(images), *maps.shape[-2:], self.site.options.specular_cover)
        scores = self.site.score(maps.numpy(), valid, np.asarray(nero.score, np.float64))
        evidence = evidence_score(scores.p_fused, self.site.options.alpha)
        # a frame NERO could not score (NaN features) stays NaN, so the loop's validity flags still see it
        evidence = np.where(np.isfinite(nero.score), evidence, np.nan)
        heat = np.clip(scores.distance_maps / self.site_threshold, 0, 1) * valid if np.isfinite(self.site_threshold) \
            else np.zeros_like(scores.distance_maps)
        heatmaps = nero.heatmaps
        if heatmaps is None or any("site" in e for e in scores.evidence):
            heatmaps = [heat[i] if ("site" in e or nero.heatmaps is None) else nero.heatmaps[i]
                        for i, e in enumerate(scores.evidence)]
        p_nero = scores.p_nero if scores.p_nero is not None else np.full(len(evidence), np.nan)
        base = {f.name: getattr(nero, f.name) for f in dataclasses.fields(ScoredBatch)}
        base.update(score=evidence, over_threshold=evidence > self.threshold, heatmaps=heatmaps)
        if nero.map_drawn is not None:  # a row showing the site's map shows no scene map, drawn or carried
            own = np.array(["site" not in e for e in scores.evidence], dtype=bool)
            base.update(map_drawn=nero.map_drawn & own, map_skipped=nero.map_skipped & own)
        return SiteScoredBatch(**base, nero_score=np.asarray(nero.score, np.float64), site_score=scores.site,
                               p_site=scores.p_site, p_nero=p_nero, evidence=scores.evidence)


def create_site_scorer(inner: Any, model: torch.nn.Module, site: SiteModel) -> SiteScorer:
    """Wrap an engine scorer with the site model; the patch backbone is the one enrollment used, compiled
    with OpenVINO when the engine runs on OpenVINO (patch_openvino.py: the same descriptors, faster)."""
    backbone = site.options.backbone
    extractor = PatchFeatureExtractor(model if backbone == "bundled" else None, site.options.layer)
    engine = getattr(inner, "engine", None)
    if getattr(inner, "backend", None) == "openvino" and engine is not None:
        from .patch_openvino import OpenVinoPatchExtractor

        extractor = OpenVinoPatchExtractor(extractor, tuple(engine.options.image_size),
                                           getattr(engine, "threads", None))
    return SiteScorer(inner, site, extractor)


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def evidence_fields(scored: SiteScoredBatch, i: int) -> dict:
    """The result message's optional `evidence` map for frame i (docs/message-schema.md)."""
    return {"fired": list(scored.evidence[i]), "nero_score": _number(scored.nero_score[i]),
            "site_score": _number(scored.site_score[i]), "p_site": _number(scored.p_site[i]),
            "p_nero": _number(scored.p_nero[i])}
