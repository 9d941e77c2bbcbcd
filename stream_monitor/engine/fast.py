"""The fast scorer: a back-end runs the fused module, the kernels finish the score where the data is.

    >>> scorer = create_scorer(model, detector)                 # backend="auto", logged at start-up
    >>> batch = scorer.score_batch(images)                      # (B, 3, 224, 224) float32 → ScoredBatch

Same contract as the reference `Scorer` (engine/scorer.py), which it is tested against. Per batch:
back-end → (logits, probs, features, relevance, R_bias, projected, [ρ], [feature map]) on its device;
then, on that device, ρ (Numba CPU kernel, unless the graph made it), nearest-centroid L1 distance,
score fusion and threshold flags (Numba kernels), the explanation (nearest raw class mean, top-n
deviating neurons, heatmap), and one copy of the small results to host memory.

Difference from the reference on purpose: a frame whose features are not finite gets a NaN score and
`over_threshold=False` instead of failing the whole batch (the reference raises `InputError`), so one
corrupt frame cannot blind the monitor to the other streams in its batch; check `np.isnan(score)`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import cv2
import numpy as np
import torch
from torch import Tensor

from .. import kernels
from ..explanations.pacing import engine_time
from ..kernels.cpu_pipeline import score_rows
from ..models.base import ClassifierAdapter
from ..models.block_stats import STATS_BLOCK
from ..nero import NeroDetector
from .alert import apply_alert
from .backends import EngineBackend, EngineOptions, select_backend
from .contract import ScoredBatch
from .fused import FusedNero

__all__ = ["EngineScorer", "create_scorer"]

log = logging.getLogger("stream_monitor.engine")


class EngineScorer:
    """Scores preprocessed frames through a compiled back-end and the scoring kernels."""

    def __init__(self, engine: EngineBackend, detector: NeroDetector, top_n: int = 5, heatmaps: bool = True,
                 explanation=None, alert=None, map_budget=None) -> None:
        self.engine = engine
        self.alert = alert  # baselines.serving.AlertDetector: what raises the alert when not NERO (engine/alert.py)
        self.explanation = explanation  # explanations.assets.ExplanationAssets: the validated map and neuron drivers
        self.map_budget = map_budget  # explanations.pacing.MapBudget: the scene map's share of engine time (live)
        self.backend = engine.name
        self.detector = detector
        self.top_n = top_n
        self.heatmaps = heatmaps
        self.max_batch = engine.options.max_batch
        cfg = detector.config
        self._switches = (cfg.use_distance, cfg.use_bias, cfg.use_rho)
        self._lambda = float(detector.lambda_)
        self._k = int(detector.k_)
        device = engine.device
        arrays = detector.fitted_arrays()
        as32 = lambda name: torch.from_numpy(np.ascontiguousarray(arrays[name], np.float32)).to(device)  # noqa: E731
        self._centroids = as32("centroids")
        self._raw_means = as32("raw_class_means")
        self._outputs: dict[tuple, tuple[Tensor, ...]] = {}

    @property
    def threshold(self) -> float:
        return self.alert.threshold if self.alert is not None else self.detector.threshold

    def score_batch(self, images: np.ndarray) -> ScoredBatch:
        """images: (B, 3, H, W) float32, ImageNet-normalised; any B (split into chunks of max_batch)."""
        if len(images) > self.max_batch:
            parts = [self.score_batch(images[i:i + self.max_batch]) for i in range(0, len(images), self.max_batch)]
            return _concatenate(parts)
        threshold = self.detector.threshold  # raises NotFittedError before any work if uncalibrated
        with torch.inference_mode(), engine_time(self.map_budget):
            out = self.engine.run(images)
            scored = self._alert(self.finish(out, threshold), out)
        return self._refine(scored, out, images=images)

    def score_uint8(self, rgb: np.ndarray) -> ScoredBatch:
        """rgb: (B, H, W, 3) uint8 model-sized RGB, as the capture processes write it to the ring; the
        back-end normalises (in its graph or on its device) — the same result as
        `score_batch(preprocess.normalize_uint8(rgb))`, without the host pass over every frame."""
        if len(rgb) > self.max_batch:
            parts = [self.score_uint8(rgb[i:i + self.max_batch]) for i in range(0, len(rgb), self.max_batch)]
            return _concatenate(parts)
        threshold = self.detector.threshold
        with torch.inference_mode(), engine_time(self.map_budget):
            out = self.engine.run_uint8(rgb)
            scored = self._alert(self.finish(out, threshold), out)
        return self._refine(scored, out, rgb=rgb)

    def _refine(self, scored: ScoredBatch, out: dict[str, Tensor], images: np.ndarray | None = None,
                rgb: np.ndarray | None = None) -> ScoredBatch:
        """The validated map and the score's driving neurons (explanations/assets.py), after the alert: the
        scene map is drawn on the frames that alert. Both input paths (normalised or uint8) get it."""
        if self.explanation is None:
            return scored
        from ..explanations.assets import refine_batch

        # the map's inputs stay where the engine left them: refine_batch copies only the rows it draws on
        return refine_batch(self.explanation, scored, images, out["relevance"].cpu().numpy(),
                            out["features"].cpu().numpy(), out.get("patch_features"), self.detector, self.top_n,
                            rgb=rgb, feature_map=out.get("feature_map"), budget=self.map_budget)

    def _alert(self, scored: ScoredBatch, out: dict[str, Tensor]) -> ScoredBatch:
        """The served alert detector's score and flags on this batch's pooled features (engine/alert.py)."""
        if self.alert is None:
            return scored
        features = out["features"].cpu().numpy()
        if self.alert.needs_block_stats:  # `[feature | block statistics]` (baselines/block_stats.py)
            features = np.concatenate([features, out["block_stats"].cpu().numpy()], axis=1)
        return apply_alert(scored, features, self.alert)

    def finish(self, out: dict[str, Tensor], threshold: float) -> ScoredBatch:
        """Everything after the graph, on the graph's device: ρ, distance, score, flags, explanation,
        then one copy to host memory. (Public so that benchmarks can time the scoring stage alone.)"""
        if self.engine.device_type == "cpu":
            return self._finish_on_host(out, threshold)
        return self._finish_on_device(out, threshold)

    def _finish_on_device(self, out: dict[str, Tensor], threshold: float) -> ScoredBatch:
        """The GPU path: kernels dispatched by where the tensors live, one copy to the host at the end.
        (Device-agnostic: on CPU tensors it runs the Numba CPU kernels one by one, which CI tests.)"""
        stage = self.score_stage(out, threshold)
        top_neurons, deviations, heat = self._explain(out, stage["reference"])
        host = _to_host({"probs": out["probs"], "score": stage["score"], "distance": stage["distance"],
                         "bias_term": stage["bias_term"], "rho": stage["rho"], "flags": stage["flags"],
                         "top": top_neurons, "dev": deviations, "heat": heat})
        return ScoredBatch(
            probs=host["probs"].astype(np.float32, copy=False),
            predicted=host["probs"].argmax(axis=1),
            score=host["score"].astype(np.float64),
            distance=host["distance"].astype(np.float64),
            bias_term=host["bias_term"].astype(np.float64),
            rho=host["rho"].astype(np.float64),
            over_threshold=(host["flags"] & kernels.FLAG_OVER).astype(bool),
            top_neurons=host["top"].astype(np.int64, copy=False),
            deviations=host["dev"].astype(np.float32, copy=False),
            heatmaps=host["heat"],
        )

    def _finish_on_host(self, out: dict[str, Tensor], threshold: float) -> ScoredBatch:
        """The CPU path: the same steps as `finish`, in one Numba call (kernels/cpu_pipeline.py)."""
        host = {name: tensor.numpy() for name, tensor in out.items()}
        parts = score_rows(host["features"], host["relevance"], host["bias_relevance"], host["projected"],
                           host.get("residual"), self._centroids.numpy(), self._raw_means.numpy(), self._k,
                           self._lambda, self._switches, threshold, min(self.top_n, host["relevance"].shape[1]),
                           host.get("feature_map") if self.heatmaps else None)
        return ScoredBatch(
            probs=host["probs"], predicted=host["probs"].argmax(axis=1), score=parts["score"],
            distance=parts["distance"], bias_term=parts["bias_term"], rho=parts["rho"],
            over_threshold=(parts["flags"] & kernels.FLAG_OVER).astype(bool), top_neurons=parts["top_index"],
            deviations=parts["top_deviation"], heatmaps=parts["heat"],
        )

    def score_stage(self, out: dict[str, Tensor], threshold: float) -> dict[str, Tensor]:
        """The Numba kernels' part of the GPU path (one fused launch on CUDA tensors): distance, score,
        bias_term, flags, the explanation's nearest raw class mean (`reference`), and ρ.
        (Public so that benchmarks time exactly what the engine runs.)"""
        rho = out["rho"] if "rho" in out else kernels.low_relevance_ratio(out["features"], out["relevance"], self._k)
        stage = kernels.score_stage(out["projected"], self._centroids, out["relevance"], self._raw_means,
                                    out["bias_relevance"], rho, self._lambda, threshold, self._switches,
                                    residual=out.get("residual"), outputs=self._stage_outputs(out["projected"]))
        return {**stage, "rho": rho}

    def _stage_outputs(self, projected: Tensor) -> tuple[Tensor, ...] | None:
        """Output buffers for the CUDA scoring stage, kept per batch size: results are copied to the
        host before `finish` returns, so reusing them is safe, and it saves an allocation and a Numba
        view per output per call."""
        if not projected.is_cuda:
            return None
        rows, dtype = projected.shape[0], projected.dtype
        key = (rows, dtype)
        if key not in self._outputs:
            self._outputs[key] = tuple(torch.empty(rows, dtype=t, device=projected.device)
                                       for t in (dtype, torch.int64, torch.int64, dtype, dtype, torch.uint8))
        return self._outputs[key]

    def _explain(self, out: dict[str, Tensor], reference: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Top-n neurons by |R_d − μ_{c,d}| against the nearest raw class mean (`reference`, from the
        scoring stage), and the heatmap."""
        relevance = out["relevance"]
        reference = torch.as_tensor(reference, device=relevance.device).clamp_min(0)  # -1 (NaN row) → any class
        deviation = relevance - self._raw_means[reference, :-1]
        top_n = min(self.top_n, relevance.shape[1])
        top, values = kernels.top_abs(deviation, top_n)
        top = torch.as_tensor(top, device=relevance.device)
        values = torch.as_tensor(values, device=relevance.device)
        heat = None
        if self.heatmaps and "feature_map" in out:
            heat = _heatmaps(out["feature_map"], top, values)
        return top, values, heat


def _heatmaps(feature_map: Tensor, neurons: Tensor, deviations: Tensor) -> Tensor:
    """Batched `explain.deviation_heatmap`: Σ_i |dev_i|·map[neuron_i], ReLU, / max → (B, h, w) in [0, 1]."""
    rows = torch.arange(len(neurons), device=neurons.device)[:, None]
    maps = feature_map[rows, neurons]  # (B, n, h, w)
    heat = torch.einsum("bn,bnhw->bhw", deviations.abs().float(), maps.float()).clamp_min(0)
    peak = heat.amax(dim=(1, 2), keepdim=True)
    return torch.where(peak > 0, heat / torch.where(peak > 0, peak, torch.ones_like(peak)), heat)


def _to_host(tensors: dict[str, Tensor | np.ndarray | None]) -> dict[str, np.ndarray | None]:
    """Every result in host memory, with one synchronisation for all the device → host copies."""
    host: dict[str, np.ndarray | None] = {}
    on_device = any(isinstance(t, Tensor) and t.is_cuda for t in tensors.values())
    moved = {k: (t.to("cpu", non_blocking=True) if isinstance(t, Tensor) else t) for k, t in tensors.items()}
    if on_device:
        torch.cuda.current_stream().synchronize()
    for key, value in moved.items():
        host[key] = value.numpy() if isinstance(value, Tensor) else value
    return host


def _concatenate(parts: list[ScoredBatch]) -> ScoredBatch:
    """One ScoredBatch of the chunks of a batch larger than max_batch. A chunk with an alerting frame has its
    heatmaps on the scene map's finer grid (explanations/assets.refine_batch): the coarser ones are resized
    to it, as refine_batch resizes the other rows of its own chunk."""
    parts = _on_one_grid(parts)
    joined = {f.name: (None if getattr(parts[0], f.name) is None
                       else np.concatenate([getattr(p, f.name) for p in parts]))
              for f in dataclasses.fields(ScoredBatch)}
    return ScoredBatch(**joined)


def _on_one_grid(parts: list[ScoredBatch]) -> list[ScoredBatch]:
    if parts[0].heatmaps is None or len({p.heatmaps.shape[1:] for p in parts}) == 1:
        return parts
    h, w = max(p.heatmaps.shape[1:] for p in parts)
    return [p if p.heatmaps.shape[1:] == (h, w) else dataclasses.replace(p, heatmaps=np.stack(
        [cv2.resize(np.asarray(m, np.float32), (w, h), interpolation=cv2.INTER_LINEAR) for m in p.heatmaps]))
        for p in parts]


def create_scorer(model: ClassifierAdapter, detector: NeroDetector, backend: str = "auto", *, device: str = "auto",
                  top_n: int = 5, heatmaps: bool = True, options: EngineOptions | None = None,
                  explanation=None, alert=None, map_budget=None) -> EngineScorer:
    """Build the fastest available engine for `model` + `detector` and say which at start-up (INFO log).

    backend: "auto" (tensorrt → torch-cuda → openvino → torch-cpu, first available) or one of
        `list_backends()`; an explicit name that cannot run here is an error.
    device: "auto", "cpu" or "cuda" — restricts "auto".
    options: precision, max_batch, threads (None: all cores but one), cache_dir, image_size (see
        `EngineOptions`).
    explanation: `explanations.assets.ExplanationAssets` fitted for this model: its patch map replaces the
        heatmap (descriptors from the engine's own forward pass), its score drivers the top neurons.
    alert: `baselines.serving.AlertDetector` stored in the detector artifact: its score raises the alert,
        NERO still explains every frame (engine/alert.py).
    map_budget: `explanations.pacing.MapBudget`, the live path's pacing of the scene map; None: drawn on
        every alerting frame (offline commands).
    The detector must be fitted on this model's head (checked) and calibrated before scoring.
    """
    options = options or EngineOptions()
    if options.threads is None:  # all cores but one: capture and transport processes run beside us
        options = dataclasses.replace(options, threads=max(1, (os.cpu_count() or 1) - 1))
    # Numba's thread count is deliberately left alone: the engine's kernels run serially at its batch
    # sizes, and starting Numba's OpenMP layer (which set_num_threads does) resets torch's thread count.
    cls, skipped = select_backend(backend, device)
    on_gpu = cls.device_type == "cuda"
    # ρ's k-smallest selection: in the graph on a GPU (topk is cheap there); on a CPU torch's topk costs
    # more than the backbone's last layer, so the Numba kernel does it after the graph.
    patch_blocks = explanation.descriptor_blocks if (explanation is not None and heatmaps) else ()
    stats_block = STATS_BLOCK if (alert is not None and alert.needs_block_stats) else None
    fused = FusedNero(model, detector, project=True, rho=on_gpu, feature_map=heatmaps, patch_blocks=patch_blocks,
                      stats_block=stats_block)
    started = time.perf_counter()
    engine = cls(fused, options)
    scorer = EngineScorer(engine, detector, top_n=top_n, heatmaps=heatmaps, explanation=explanation, alert=alert,
                          map_budget=map_budget)
    log.info("engine back-end: %s — built in %.1f s%s", engine.describe(), time.perf_counter() - started,
             "".join(f"; skipped {s}" for s in skipped))
    return scorer
