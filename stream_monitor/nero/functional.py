"""NERO's math as pure functions on arrays (docs/NERO.md §1–§6).

Every function here is batched (no per-sample Python loop) and works in the dtype it is given; the
detector calls them in float64. Shapes: N samples, D features, C classes, K centroids, P PCA components.

This is the one definition of the math: the scoring kernels' NumPy reference (`kernels/reference.py`),
which the Numba CPU and CUDA kernels are tested against, is built on these functions. One rule for ties
and NaN holds everywhere:
- ties go to the earlier index: the nearest centroid is the first minimum (`np.argmin`), ρ's k least
  relevant neurons and the top-|deviation| neurons come from a stable sort;
- a row with any NaN input gets a NaN distance, index −1 and a NaN ρ: it is never silently scored;
- a feature row whose L1 norm is 0 has ρ = 0 (no norm to share).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import InputError


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of `(N, C)` logits, shifted by the row max so that exp never overflows."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    expd = np.exp(shifted)
    return expd / expd.sum(axis=1, keepdims=True)


def stabilize_logits(logits: np.ndarray, rule: str, epsilon: float) -> tuple[np.ndarray, int]:
    """Denominators for the LRP-epsilon step, and how many logits the rule actually moved.

    rule "none": `f` as is (the reference code, ε = 0; explodes as f → 0).
    rule "sign": `f + ε·sign(f)` with sign(0) = +1 — moves every logit away from 0 by ε.
    rule "clamp": `sign(f)·max(|f|, ε)` — changes only logits closer to 0 than ε.
    The count is the number of logits with |f| < ε (those the rule changed materially).
    """
    if rule == "none":
        return logits, 0
    sign = np.where(logits >= 0, 1.0, -1.0).astype(logits.dtype)
    near_zero = int(np.count_nonzero(np.abs(logits) < epsilon))
    if rule == "sign":
        return logits + epsilon * sign, near_zero
    if rule == "clamp":
        return sign * np.maximum(np.abs(logits), epsilon), near_zero
    raise InputError(f"unknown stabilizer {rule!r}; expected 'none', 'sign' or 'clamp'")


class Relevance(NamedTuple):
    """Head relevance of a batch: `neurons (N, D)`, `bias (N,)`, and the logits and probabilities used."""

    neurons: np.ndarray
    bias: np.ndarray
    logits: np.ndarray
    probs: np.ndarray
    stabilized: int


def head_relevance(
    features: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    rule: str = "none",
    epsilon: float = 0.0,
) -> Relevance:
    """One LRP-epsilon step through a linear head, bias as an extra input (NERO.md §1).

    `R_d = Σ_c p_c · W'_{c,d} · a'_d / (f_c + ε)` with `a' = [a, 1]`, `W' = [W | b]`, as two matrix
    products: `G = P ⊘ f̃ (N, C)`, `R = [A, 1] ⊙ (G · W') (N, D+1)`. With rule "none" each row of
    relevance (neurons and bias together) sums to exactly 1.

    features (N, D), weight (C, D), bias (C,) → Relevance with neurons (N, D) and bias (N,).
    """
    logits = features @ weight.T + bias
    probs = softmax(logits)
    denominators, stabilized = stabilize_logits(logits, rule, epsilon)
    gain = probs / denominators
    neurons = features * (gain @ weight)
    bias_relevance = gain @ bias
    return Relevance(neurons, bias_relevance, logits, probs, stabilized)


def low_relevance_norm_ratio(features: np.ndarray, neuron_relevance: np.ndarray, k: int) -> np.ndarray:
    """ρ: the share of the feature L1 norm held by the k least-relevant neurons (NERO.md §2).

    Where tied relevances straddle the k-th place the earlier neurons are taken (stable sort); in
    practice ties are dead ReLU units, whose relevance and |a| are both 0, so the choice cannot change ρ.
    A sample whose features are all zero gets ρ = 0 (it has no norm to share) rather than a division by
    zero; a row with NaN in either input gets NaN.

    features (N, D), neuron_relevance (N, D), 1 ≤ k ≤ D → (N,)
    """
    n_features = features.shape[1]
    if not 1 <= k <= n_features:
        raise InputError(f"k must be in [1, D={n_features}], got {k}")
    magnitudes = np.abs(features)
    if k == n_features:
        selected = magnitudes.sum(axis=1)
    else:
        lowest = np.argsort(neuron_relevance, axis=1, kind="stable")[:, :k]
        selected = np.take_along_axis(magnitudes, lowest, axis=1).sum(axis=1)
    total = magnitudes.sum(axis=1)
    safe_total = np.where(total > 0, total, 1.0)
    rho = np.where(total > 0, selected / safe_total, 0.0)
    bad = np.isnan(features).any(axis=1) | np.isnan(neuron_relevance).any(axis=1)
    return np.where(bad, np.nan, rho) if bad.any() else rho


class PCA(NamedTuple):
    """A fitted PCA: `mean (D,)` and orthonormal `components (P, D)`, sign-fixed for determinism."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray


def fit_pca(samples: np.ndarray, n_components: int) -> PCA:
    """Centre on the mean and keep the top `n_components` right singular vectors (full SVD, no whitening).

    Deterministic: LAPACK's full SVD, then each component's sign fixed so that its largest-magnitude
    entry is positive (scikit-learn's `svd_flip` convention on V).

    samples (N, D) with n_components ≤ min(N, D) → PCA
    """
    n_samples, n_features = samples.shape
    if not 1 <= n_components <= min(n_samples, n_features):
        raise InputError(
            f"PCA needs 1 ≤ components ≤ min(N={n_samples}, D={n_features}), got {n_components}"
        )
    mean = samples.mean(axis=0)
    _, singular_values, vt = np.linalg.svd(samples - mean, full_matrices=False)
    components = vt[:n_components]
    largest = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(n_components), largest])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    variance = singular_values[:n_components] ** 2 / max(n_samples - 1, 1)
    return PCA(mean, components, variance)


def pca_transform(samples: np.ndarray, pca: PCA) -> np.ndarray:
    """Project `(N, D)` samples onto the PCA components → `(N, P)`."""
    return (samples - pca.mean) @ pca.components.T


def residual_ratio(samples: np.ndarray, pca: PCA) -> np.ndarray:
    """Share of each sample's centred norm that lies outside the PCA subspace: ‖x̃ − VᵀV x̃‖₂ / ‖x̃‖₂.

    A relevance pattern the training frames never produced has most of its energy in directions they
    do not span. samples (N, D) → (N,) in [0, 1]; a sample at the mean gets 0.
    """
    centred = samples - pca.mean
    inside = (centred @ pca.components.T) @ pca.components
    total = np.linalg.norm(centred, axis=1)
    outside = np.linalg.norm(centred - inside, axis=1)
    return np.divide(outside, total, out=np.zeros_like(total), where=total > 0)


def class_means(samples: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean of the samples of each class → `(C, D)`; every class must have at least one sample."""
    counts = np.bincount(labels, minlength=n_classes)
    sums = np.zeros((n_classes, samples.shape[1]), dtype=samples.dtype)
    np.add.at(sums, labels, samples)
    return sums / counts[:, None]


def kmeans(samples: np.ndarray, n_clusters: int, seed: int, n_iter: int = 100) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding from `np.random.default_rng(seed)` → `(K, D)` centres.

    Deterministic for a given seed. Asks for no more clusters than there are distinct samples; a
    cluster that empties keeps its previous centre.
    """
    n_distinct = len(np.unique(samples, axis=0))
    n_clusters = min(n_clusters, n_distinct)
    rng = np.random.default_rng(seed)
    centres = [samples[rng.integers(len(samples))]]
    for _ in range(1, n_clusters):
        nearest = _squared_l2(samples, np.asarray(centres)).min(axis=1)
        centres.append(samples[rng.choice(len(samples), p=nearest / nearest.sum())])
    centres = np.asarray(centres)
    for _ in range(n_iter):
        assignment = _squared_l2(samples, centres).argmin(axis=1)
        updated = centres.copy()
        for cluster in range(n_clusters):
            members = samples[assignment == cluster]
            if len(members):
                updated[cluster] = members.mean(axis=0)
        if np.array_equal(updated, centres):
            break
        centres = updated
    return centres


def _squared_l2(samples: np.ndarray, centres: np.ndarray) -> np.ndarray:
    squared = (samples**2).sum(1)[:, None] - 2 * samples @ centres.T + (centres**2).sum(1)[None, :]
    return np.maximum(squared, 0.0)


def l1_distances(samples: np.ndarray, centroids: np.ndarray, chunk: int = 256) -> np.ndarray:
    """All L1 distances from `(N, P)` samples to `(K, P)` centroids → `(N, K)`, in bounded memory."""
    out = np.empty((len(samples), len(centroids)), dtype=np.result_type(samples, centroids))
    for start in range(0, len(samples), chunk):
        block = samples[start : start + chunk]
        out[start : start + chunk] = np.abs(block[:, None, :] - centroids[None, :, :]).sum(axis=2)
    return out


def nearest_centroid(samples: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L1 distance from each row to its nearest centroid, and that centroid's index.

    Ties: the first index of the minimum. NaN: a row with any NaN distance gets NaN and index −1.
    samples (N, P), centroids (K ≥ 1, P) → distance (N,), index (N,) int64.
    """
    if centroids.ndim != 2 or centroids.shape[0] < 1 or samples.shape[1:] != centroids.shape[1:]:
        raise InputError(f"samples (N, P) and centroids (K ≥ 1, P) disagree: {samples.shape}, {centroids.shape}")
    distances = l1_distances(samples, centroids)
    index = distances.argmin(axis=1) if len(samples) else np.zeros(0, dtype=np.int64)
    nearest = distances[np.arange(len(samples)), index]
    bad = np.isnan(distances).any(axis=1)
    return np.where(bad, np.nan, nearest), np.where(bad, -1, index).astype(np.int64)


def top_abs(values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n entries of largest |value| in each row, largest first, earlier index first on ties.

    values (N, D), 1 ≤ n ≤ D → index (N, n) int64, value (N, n) (signed, in values' dtype).
    """
    index = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :n].astype(np.int64)
    return index, np.take_along_axis(values, index, axis=1)


def bias_scale(distances: np.ndarray, bias_relevance: np.ndarray) -> float:
    """λ = mean distance to the nearest centroid / mean |bias relevance| over the train set (NERO.md §5).

    distances (N,) nearest-centroid L1 distances, bias_relevance (N,) → λ ≥ 0. A head whose bias
    relevance is identically zero (no bias) gets λ = 0: the bias term then contributes nothing.
    """
    mean_bias = float(np.mean(np.abs(bias_relevance)))
    return float(np.mean(distances)) / mean_bias if mean_bias > 0 else 0.0


def fuse_score(
    distance: np.ndarray,
    bias_term: np.ndarray,
    rho: np.ndarray,
    use_distance: bool = True,
    use_bias: bool = True,
    use_rho: bool = True,
    residual: np.ndarray | None = None,
) -> np.ndarray:
    """NERO(x) = (d(x) + λ·|R_bias(x)|) · ρ(x), each term switchable for ablations (NERO.md §6).

    With `residual` (robust mode's optional relevance-residual term) the result is multiplied by it;
    when both distance and bias are off the residual alone is the score.
    """
    if use_distance or use_bias:
        total = np.zeros_like(distance)
        if use_distance:
            total = total + distance
        if use_bias:
            total = total + bias_term
    else:
        total = np.ones_like(distance)
    if use_rho:
        total = total * rho
    return total * residual if residual is not None else total
