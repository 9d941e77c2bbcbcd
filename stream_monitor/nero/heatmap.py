"""Explanations a person can look at: which neurons deviate from the nearest ID class, and where.

For a CNN each neuron of the pooled feature is a channel of the last feature map, so the channels that
deviate most, weighted by |deviation|, make a cheap image-space heatmap (docs/NERO.md §11).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import Explanation  # noqa: E402


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


def explanation_figure(path: Path, image_bgr: np.ndarray, explanation: Explanation, index: int, class_names: list[str],
                       threshold: float | None, heat: np.ndarray | None, title: str) -> None:
    """One PNG: the image (with heatmap when there is one), the score's parts, the top deviating neurons."""
    parts = explanation.parts
    score = parts.score[index]
    flagged = threshold is not None and score > threshold
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1.1, 1]})
    shown = blend_heatmap(image_bgr, heat) if heat is not None else image_bgr
    axes[0].imshow(cv2.cvtColor(shown, cv2.COLOR_BGR2RGB))
    axes[0].axis("off")
    predicted = class_names[int(parts.probs[index].argmax())]
    axes[0].set_title(f"{title}\npredicted {predicted} ({parts.probs[index].max():.0%})", fontsize=9)
    neurons, deviations = explanation.top_neurons[index], explanation.deviations[index]
    colours = ["tab:red" if d > 0 else "tab:blue" for d in deviations]
    axes[1].barh([f"#{n}" for n in neurons][::-1], deviations[::-1], color=colours[::-1])
    axes[1].axvline(0, color="black", lw=0.6)
    reference = class_names[int(explanation.reference_class[index])]
    verdict = "OOD ALERT" if flagged else ("in distribution" if threshold is not None else "no threshold")
    axes[1].set_title(
        f"score {score:.4g}" + (f" vs threshold {threshold:.4g}: {verdict}" if threshold is not None else "")
        + f"\ndistance {parts.distance[index]:.4g}, λ|R_bias| {parts.bias_term[index]:.4g}, ρ {parts.rho[index]:.3f}",
        fontsize=9,
    )
    axes[1].set_xlabel(f"relevance − centroid of '{reference}' (red: above, blue: below)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
