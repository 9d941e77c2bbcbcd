"""Reference scorer: a classifier and a fitted NERO detector → `ScoredBatch` per batch of frames
(torch forward, then `NeroDetector.explain` in NumPy float64: the definition the fast engine is tested against)."""

from __future__ import annotations

import numpy as np
import torch

from ..explanations.pacing import engine_time
from ..models.base import ClassifierAdapter
from ..models.block_stats import STATS_BLOCK, require_block_stats
from ..nero import NeroDetector
from ..nero.heatmap import deviation_heatmap
from .alert import apply_alert
from .contract import ScoredBatch
from .fused import backbone_outputs


class Scorer:
    """Scores preprocessed frames with a model and a NERO detector fitted on that model's head."""

    backend = "torch-cpu-reference"

    def __init__(self, model: ClassifierAdapter, detector: NeroDetector, top_n: int = 5, heatmaps: bool = True,
                 explanation=None, alert=None, map_budget=None) -> None:
        weight, bias = model.head_arrays()
        detector.check_head(weight, bias)
        self.model = model.eval()
        self.detector = detector
        self.top_n = top_n
        self.heatmaps = heatmaps
        self.explanation = explanation  # explanations.assets.ExplanationAssets: the validated map and neuron drivers
        self.alert = alert  # baselines.serving.AlertDetector: what raises the alert when not NERO (engine/alert.py)
        self.map_budget = map_budget  # explanations.pacing.MapBudget: the scene map's share of engine time (live)
        if alert is not None and alert.needs_block_stats:
            require_block_stats(model, f"the alert detector {alert.name!r}")

    @property
    def threshold(self) -> float:
        return self.alert.threshold if self.alert is not None else self.detector.threshold

    @torch.inference_mode()
    def score_batch(self, images: np.ndarray) -> ScoredBatch:
        """images: (B, 3, 224, 224) float32, ImageNet-normalised (see `stream_monitor.preprocess`)."""
        with engine_time(self.map_budget):  # the map budget earns its share of this pass (explanations/pacing.py)
            scored, parts, features, feature_map, descriptors = self._score(images)
        if self.explanation is not None:  # after the alert: the scene map is drawn on the frames that alert
            from ..explanations.assets import refine_batch

            scored = refine_batch(self.explanation, scored, images, parts.relevance, features.double().numpy(),
                                  descriptors if self.heatmaps else None, self.detector, self.top_n,
                                  feature_map=None if feature_map is None else feature_map.numpy(),
                                  budget=self.map_budget)
        return scored

    def _score(self, images: np.ndarray):
        """The forward pass, NERO's score and explanation, and the alert; returns what refine_batch needs."""
        patch_blocks = self.explanation.descriptor_blocks if self.explanation is not None else ()
        stats_block = STATS_BLOCK if (self.alert is not None and self.alert.needs_block_stats) else None
        features, feature_map, descriptors, stats = backbone_outputs(self.model, torch.from_numpy(images),
                                                                      patch_blocks, stats_block)
        exp = self.detector.explain(features.double().numpy(), top_n=self.top_n)
        parts = exp.parts
        heat = None
        if self.heatmaps and feature_map is not None:
            maps = feature_map.numpy()
            heat = np.stack([deviation_heatmap(maps[i], exp.top_neurons[i], exp.deviations[i]) for i in range(len(maps))])
        scored = ScoredBatch(
            probs=parts.probs.astype(np.float32),
            predicted=parts.probs.argmax(axis=1),
            score=parts.score,
            distance=parts.distance,
            bias_term=parts.bias_term,
            rho=parts.rho,
            over_threshold=parts.score > self.detector.threshold,
            top_neurons=exp.top_neurons,
            deviations=exp.deviations.astype(np.float32),
            heatmaps=heat,
        )
        if self.alert is not None:
            alert_input = features if stats is None else torch.cat([features, stats], dim=1)
            scored = apply_alert(scored, alert_input.double().numpy(), self.alert)
        return scored, parts, features, feature_map, descriptors
