"""Neurons a person can read: which neurons drive the shipped score, and what each usually responds to.

Drivers. The shipped detector scores the relevance residual s = ‖r‖ / ‖x̃‖ (x̃ = R − μ, the frame's
relevance minus the training mean; r its part outside the training PCA subspace). Over neurons,

    c_d = x̃_d · r_d / (‖r‖ · ‖x̃‖)      with      Σ_d c_d = ‖r‖² / (‖r‖ · ‖x̃‖) = s   exactly,

so the neurons with the largest c_d are the ones the alert rests on; distance, λ|R_bias| and ρ are not
in this score and are not shown. Each driver is worded by its activation against the training frames:
"more of" when a_d is above its ID-train mean, "less of" when below (the sign of `signed`).

Atlas. For every neuron (a channel of the last feature map) the `per_neuron` ID training images where
it fires most, each cropped around its strongest location: thumbnails computed once at fit time and
stored as JPEG bytes in plain uint8 arrays (no pickle), beside the detector (explanations/assets.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import InputError

__all__ = ["NeuronAtlas", "residual_drivers"]


def residual_drivers(relevance: np.ndarray, pca_mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Per-neuron parts of the relevance-residual score: (N, D) relevance → (N, D) c with Σ_d c_d = s.

    pca_mean (D,), components (P, D) of the detector (fitted_arrays()). A row at the mean or with no
    residual scores 0 and gets all-zero parts. float64.
    """
    centred = np.asarray(relevance, np.float64) - pca_mean
    outside = centred - (centred @ components.T) @ components
    scale = np.linalg.norm(centred, axis=1) * np.linalg.norm(outside, axis=1)
    parts = centred * outside
    return np.divide(parts, scale[:, None], out=np.zeros_like(parts), where=scale[:, None] > 0)


@dataclass(frozen=True)
class NeuronAtlas:
    """mean_activation (D,) float32: ID-train mean of each pooled feature; jpeg (total,) uint8 and
    offsets (D + 1,) int64: neuron d's thumbnail strip (per_neuron thumbnails side by side, RGB) is
    jpeg[offsets[d]:offsets[d+1]]; thumb: thumbnail side in pixels."""

    mean_activation: np.ndarray
    jpeg: np.ndarray
    offsets: np.ndarray
    thumb: int
    per_neuron: int

    @classmethod
    def fit(cls, feature_maps: np.ndarray, rgb: np.ndarray, per_neuron: int = 3, thumb: int = 28,
            crop: int = 64) -> "NeuronAtlas":
        """feature_maps (N, D, h, w) of ID training frames, rgb (N, H, W, 3) uint8 the same frames as the
        model saw them. For each neuron: its `per_neuron` images of highest peak activation, cropped
        `crop` px around the peak cell, resized to `thumb`."""
        maps = np.asarray(feature_maps, np.float32)
        if maps.ndim != 4 or len(maps) != len(rgb) or len(maps) < per_neuron:
            raise InputError(f"need (N ≥ {per_neuron}, D, h, w) feature maps and N images, got {maps.shape} and {len(rgb)}")
        n, channels, h, w = maps.shape
        height, width = rgb.shape[1:3]
        flat = maps.reshape(n, channels, h * w)
        peak_cell = flat.argmax(axis=2)  # (N, D)
        peak_value = flat.max(axis=2)
        best = np.argsort(-peak_value, axis=0, kind="stable")[:per_neuron]  # (per_neuron, D)
        strips, offsets = [], [0]
        for d in range(channels):
            tiles = []
            for i in best[:, d]:
                y, x = divmod(int(peak_cell[i, d]), w)
                cy, cx = int((y + 0.5) * height / h), int((x + 0.5) * width / w)
                top = int(np.clip(cy - crop // 2, 0, height - crop))
                left = int(np.clip(cx - crop // 2, 0, width - crop))
                tiles.append(cv2.resize(rgb[i, top:top + crop, left:left + crop], (thumb, thumb),
                                        interpolation=cv2.INTER_AREA))
            ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(np.concatenate(tiles, axis=1), cv2.COLOR_RGB2BGR),
                                       [cv2.IMWRITE_JPEG_QUALITY, 85])
            if not ok:
                raise InputError(f"could not encode the thumbnails of neuron {d}")
            strips.append(encoded.reshape(-1))
            offsets.append(offsets[-1] + len(strips[-1]))
        mean_activation = maps.mean(axis=(0, 2, 3)).astype(np.float32)  # = mean of the pooled features
        return cls(mean_activation, np.concatenate(strips).astype(np.uint8), np.asarray(offsets, np.int64),
                   thumb, per_neuron)

    @property
    def size(self) -> int:
        return int(len(self.mean_activation))

    def strip(self, neuron: int) -> np.ndarray:
        """(thumb, thumb · per_neuron, 3) uint8 BGR: the neuron's thumbnails side by side."""
        if not 0 <= neuron < self.size:
            raise InputError(f"neuron {neuron} is outside 0…{self.size - 1}")
        data = self.jpeg[self.offsets[neuron]:self.offsets[neuron + 1]]
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f"the thumbnails of neuron {neuron} do not decode")
        return image

    def signed_drivers(self, relevance: np.ndarray, features: np.ndarray, pca_mean: np.ndarray,
                       components: np.ndarray, top_n: int) -> tuple[np.ndarray, np.ndarray]:
        """The top-n neurons by their part of the score, largest first, and that part signed by direction:
        + where the neuron fires more than on ID training frames, − where less. (N, n) int64, (N, n) float32."""
        parts = residual_drivers(relevance, pca_mean, components)
        top_n = min(top_n, parts.shape[1])
        top = np.argsort(-parts, axis=1, kind="stable")[:, :top_n]
        direction = np.where(np.take_along_axis(np.asarray(features), top, axis=1)
                             >= self.mean_activation[top], 1.0, -1.0)
        return top.astype(np.int64), (np.take_along_axis(parts, top, axis=1) * direction).astype(np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"atlas_mean_activation": self.mean_activation, "atlas_jpeg": self.jpeg,
                "atlas_offsets": self.offsets}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], thumb: int, per_neuron: int) -> "NeuronAtlas":
        try:
            atlas = cls(arrays["atlas_mean_activation"], arrays["atlas_jpeg"], arrays["atlas_offsets"], thumb, per_neuron)
        except KeyError as exc:
            raise InputError(f"arrays hold no neuron atlas ({exc})") from exc
        if len(atlas.offsets) != atlas.size + 1 or atlas.offsets[-1] != len(atlas.jpeg):
            raise InputError("neuron atlas offsets do not match its thumbnails")
        return atlas
