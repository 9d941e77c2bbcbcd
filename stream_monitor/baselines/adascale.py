"""AdaSCALE (Regmi et al. 2025, "AdaSCALE: Adaptive scaling for OOD detection"), variants A and L.

SCALE multiplies a sample's features by `exp(s1 / s2)` with one fixed percentile for the top-k sum s2.
AdaSCALE picks the percentile per sample: a frame whose strongest activations move a lot under a small
input perturbation is deemed OOD-like and gets a lower percentile (a larger k). The statistic needs a
second forward pass on a perturbed image — the gradient of the top logit w.r.t. the input decides which
pixels move — so AdaSCALE does not fit the feature-level `fit/score` contract of the other baselines. It
is split into pure functions on (features, perturbed features) and `adascale_features`, the only part
that needs the torch model, run like ODIN in the evaluation; the live engine does not serve it (it would
need a backward pass per frame).

Defaults are OpenOOD's (configs/postprocessors/adascale_a.yml): percentiles 75-85, k1 = 5 % and
k2 = 1 % of D, lambda = 10, o = 5 % of the input values perturbed by 0.5 (normalised units).

Scores (higher = more OOD), r = `adascale_factor(a, p)`:
- AdaSCALE-A: `-logsumexp(W (a · exp(r)) + b)`   (activation scaling, as SCALE)
- AdaSCALE-L: `-logsumexp((W a + b) · r²)`        (logit scaling)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ._common import Float64Array, linear_logits, logsumexp


def _top_indices(features: Float64Array, k: int) -> np.ndarray:
    """Column indices (N, k) of each row's k largest values (stable order: ties by column)."""
    return np.argsort(-features, axis=1, kind="stable")[:, :k]


def adascale_statistic(features: Float64Array, perturbed: Float64Array, k1: int, k2: int,
                       lmbda: float) -> Float64Array:
    """Q' = sum of relu(perturbed) over the k1 largest units of `a` + lambda · sum of |a - a'| over the k2
    largest. features, perturbed (N, D) -> (N,) float64."""
    top1 = _top_indices(features, k1)
    top2 = _top_indices(features, k2)
    correction = np.take_along_axis(np.maximum(perturbed, 0.0), top1, axis=1).sum(axis=1)
    shift = np.take_along_axis(np.abs(features - perturbed), top2, axis=1).sum(axis=1)
    return correction + lmbda * shift


def empirical_cdf(reference: Float64Array, values: Float64Array) -> Float64Array:
    """Share of `reference` values <= each of `values` (a right-continuous ECDF, as statsmodels')."""
    return np.searchsorted(np.sort(reference), values, side="right") / len(reference)


def adascale_percentiles(statistic: Float64Array, reference: Float64Array, p_min: float,
                         p_max: float) -> Float64Array:
    """Per-sample percentile `p_min + (1 - ECDF_ref(Q')) · (p_max - p_min)`, in [p_min, p_max]."""
    return p_min + (1.0 - empirical_cdf(reference, statistic)) * (p_max - p_min)


def adascale_factor(features: Float64Array, percentiles: Float64Array) -> Float64Array:
    """r = s1 / s2 per row on relu(a): s1 the row sum, s2 the sum of its top `D - round(D·p/100)` values
    (p per row, as SCALE's rounding). A row with s2 = 0 gets r = 1 (nothing to scale). (N, D) -> (N,)."""
    x = np.maximum(features, 0.0)
    d = x.shape[1]
    kept = np.clip(d - np.round(d * percentiles / 100.0).astype(np.int64), 1, d)
    cumulative = np.cumsum(-np.sort(-x, axis=1), axis=1)
    top = cumulative[np.arange(len(x)), kept - 1]
    total = x.sum(axis=1)
    return np.divide(total, top, out=np.ones_like(total), where=top > 0)


def adascale_a_score(features: Float64Array, weight: Float64Array, bias: Float64Array,
                     factor: Float64Array) -> Float64Array:
    """AdaSCALE-A: `-logsumexp(W (a · exp(r)) + b)`. (N, D), (C, D), (C,), (N,) -> (N,) float64."""
    return -logsumexp(linear_logits(features * np.exp(factor)[:, None], weight, bias), axis=1)


def adascale_l_score(logits: Float64Array, factor: Float64Array) -> Float64Array:
    """AdaSCALE-L: `-logsumexp(f · r²)`. logits (N, C), factor (N,) -> (N,) float64."""
    return -logsumexp(logits * (factor**2)[:, None], axis=1)


@dataclass
class AdaSCALE:
    """Fitted on ID data only: the reference distribution of Q' (OpenOOD uses the ID validation set).

    Usage: `det = AdaSCALE().fit(val_a, val_a_perturbed, weight, bias)`, then
    `det.score(a, a_perturbed, variant="A" | "L")`; pairs come from `adascale_features`.
    """

    percentiles: tuple[float, float] = (75.0, 85.0)
    k1_percent: float = 5.0
    k2_percent: float = 1.0
    lmbda: float = 10.0

    def __post_init__(self) -> None:
        p_min, p_max = self.percentiles
        if not 0.0 < p_min <= p_max < 100.0:
            raise InputError(f"percentiles must satisfy 0 < min <= max < 100; got {self.percentiles}")
        if not (0 < self.k1_percent <= 100 and 0 < self.k2_percent <= 100):
            raise InputError("k1_percent and k2_percent must lie in (0, 100]")

    def _k(self, percent: float, d: int) -> int:
        return int(d * percent / 100)  # truncates, as the reference code; 0 drops that term (k2 at D < 100)

    def fit(self, features: np.ndarray, perturbed: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> "AdaSCALE":
        a, a2 = np.asarray(features, np.float64), np.asarray(perturbed, np.float64)
        if a.ndim != 2 or a.shape != a2.shape or a.shape[0] == 0:
            raise InputError(f"features and perturbed features must be equal (N, D) arrays; got {a.shape}, {a2.shape}")
        self.weight_, self.bias_ = np.asarray(weight, np.float64), np.asarray(bias, np.float64)
        self.k1_, self.k2_ = self._k(self.k1_percent, a.shape[1]), self._k(self.k2_percent, a.shape[1])
        self.reference_ = np.sort(adascale_statistic(a, a2, self.k1_, self.k2_, self.lmbda))
        return self

    def score(self, features: np.ndarray, perturbed: np.ndarray, variant: str = "A") -> Float64Array:
        a, a2 = np.asarray(features, np.float64), np.asarray(perturbed, np.float64)
        statistic = adascale_statistic(a, a2, self.k1_, self.k2_, self.lmbda)
        factor = adascale_factor(a, adascale_percentiles(statistic, self.reference_, *self.percentiles))
        if variant == "A":
            return adascale_a_score(a, self.weight_, self.bias_, factor)
        if variant == "L":
            return adascale_l_score(linear_logits(a, self.weight_, self.bias_), factor)
        raise InputError(f"variant must be 'A' or 'L'; got {variant!r}")


def adascale_perturb(images: torch.Tensor, grad: torch.Tensor, fraction: float = 0.05,
                     step: float = 0.5) -> torch.Tensor:
    """Move the `fraction` of input values with the *smallest* |gradient| by `step · sign(gradient)`.

    images, grad (B, C, H, W) float -> (B, C, H, W). Ties in |gradient| are broken by torch.topk.
    """
    b = images.shape[0]
    flat = grad.abs().reshape(b, -1)
    n = int(flat.shape[1] * fraction)
    mask = torch.zeros_like(flat)
    if n > 0:
        mask.scatter_(1, torch.topk(flat, n, dim=1, largest=False).indices, 1.0)
    return images + grad.sign() * mask.reshape(images.shape) * step


def adascale_features(model: torch.nn.Module, images: torch.Tensor, fraction: float = 0.05,
                      step: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Features of the images and of their AdaSCALE perturbation: two (B, D) float64 arrays.

    `model(x)` must return `(logits, features, ...)` (a ClassifierAdapter) and be in eval mode. The
    perturbation follows the gradient of each image's top logit w.r.t. its (normalised) input.
    """
    x = images.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits, feats = model(x)[:2]
        top = logits.gather(1, logits.detach().argmax(1, keepdim=True)).sum()
        (grad,) = torch.autograd.grad(top, x)
    with torch.no_grad():
        perturbed = model(adascale_perturb(images, grad, fraction, step))[1]
    return feats.detach().double().numpy(), perturbed.double().numpy()
