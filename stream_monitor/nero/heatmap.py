"""Explanations a person can look at: where the frame is unusual and which neurons the score rests on.

Two generations live here. The channel-deviation heatmap (Σ|deviation| × channel activation of the
last feature map, docs/NERO.md §11) is what a detector without an explanation artifact gets. With one
(explanations/assets.py), the map is the patch map (explanations/patch.py) — measured against polyp masks in
docs/results/explanations — and the neurons are the score's drivers, shown with training-patch
thumbnails (explanations/neurons.py).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def deviation_heatmap(feature_map: np.ndarray, neurons: np.ndarray, deviations: np.ndarray) -> np.ndarray:
    """Σ_i |dev_i| · map[neuron_i], normalised to [0, 1].

    feature_map (D, h, w) float, neurons (n,) int channel indices, deviations (n,) → (h, w) float32.
    A map with no activation in those channels is all zeros (nothing to point at), not NaN.
    """
    weights = np.abs(deviations).astype(np.float32)
    heat = np.tensordot(weights, feature_map[neurons].astype(np.float32), axes=1)
    heat = np.maximum(heat, 0)
    peak = float(heat.max())
    return heat / peak if peak > 0 else heat


def blend_heatmap(image_bgr: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Overlay an (h, w) heatmap in [0, 1] on a BGR uint8 image of any size (JET colours)."""
    resized = cv2.resize(heat, (image_bgr.shape[1], image_bgr.shape[0]), interpolation=cv2.INTER_CUBIC)
    coloured = cv2.applyColorMap(np.clip(resized * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(image_bgr, 1 - alpha, coloured, alpha, 0)


def score_terms_text(detector_config, distance: float, bias_term: float, rho: float) -> str:
    """The parts of the score that the detector actually uses, as one line (a relevance-residual
    detector scores the residual alone: distance, λ|R_bias| and ρ are then not shown)."""
    cfg = detector_config
    if cfg.use_residual and not (cfg.use_distance or cfg.use_bias or cfg.use_rho):
        return "score = relevance residual: share of the frame's neuron relevance outside what ID frames span"
    terms = ([f"distance {distance:.4g}"] if cfg.use_distance else []) + \
        ([f"λ|R_bias| {bias_term:.4g}"] if cfg.use_bias else []) + ([f"ρ {rho:.3f}"] if cfg.use_rho else [])
    return ", ".join(terms) + (" × relevance residual" if cfg.use_residual else "")


def explanation_figure(path: Path, image_bgr: np.ndarray, scored, index: int, class_names: list[str],
                       threshold: float | None, detector_config, title: str, atlas=None,
                       served_parts: str | None = None) -> None:
    """One PNG: the image with the explanation map, the score and the parts it is made of, and the
    neurons named with what they usually respond to (thumbnails from the atlas, when there is one).

    scored: a `ScoredBatch` (engine/scorer.py); atlas: `explanations.neurons.NeuronAtlas` or None;
    served_parts: when a served detector raises the alert (`scored.score` is its score), the line naming
    its parts: NERO's own score and parts are then shown as what explains the frame."""
    score = scored.score[index]
    flagged = threshold is not None and score > threshold
    heat = scored.heatmaps[index] if scored.heatmaps is not None else None
    neurons, values = scored.top_neurons[index], scored.deviations[index]
    fig = plt.figure(figsize=(11, 4.6))
    grid = fig.add_gridspec(max(1, len(neurons)) + 1, 2, width_ratios=[1.1, 1])
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(cv2.cvtColor(blend_heatmap(image_bgr, heat) if heat is not None else image_bgr, cv2.COLOR_BGR2RGB))
    ax.axis("off")
    predicted = class_names[int(scored.probs[index].argmax())]
    ax.set_title(f"{title}\npredicted {predicted} ({scored.probs[index].max():.0%})", fontsize=9)
    verdict = "OOD ALERT" if flagged else ("in distribution" if threshold is not None else "no threshold")
    head = fig.add_subplot(grid[0, 1])
    head.axis("off")
    nero_terms = score_terms_text(detector_config, scored.distance[index], scored.bias_term[index], scored.rho[index])
    if served_parts is not None:
        nero_terms = served_parts + f"\nNERO explains it (NERO score {scored.nero_score[index]:.4g}):\n" + nero_terms
    head.text(0, 0.5, f"score {score:.4g}" + (f" vs threshold {threshold:.4g}: {verdict}" if threshold is not None else "")
              + "\n" + nero_terms
              + "\nunusual: (+) more of / (−) less of what these neurons respond to", fontsize=8, va="center")
    for row, (neuron, value) in enumerate(zip(neurons, values), start=1):
        cell = fig.add_subplot(grid[row, 1])
        cell.axis("off")
        if atlas is not None:
            cell.imshow(cv2.cvtColor(atlas.strip(int(neuron)), cv2.COLOR_BGR2RGB), extent=(0, 3, 0, 1))
            word = "more of" if value > 0 else "less of"
            label = f"{word}  (neuron #{neuron}, {abs(value):.3g} of the score)"
        else:
            label = f"neuron #{neuron}: relevance {value:+.3g} vs the nearest class centroid"
        cell.text(3.2 if atlas is not None else 0, 0.5, label, fontsize=8, va="center")
        cell.set_xlim(0, 8)
        cell.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
