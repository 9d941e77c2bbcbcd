"""Detectors that model the ID train features themselves: Mahalanobis, ViM, NECO, KNN.

The maths are pure functions on float64 arrays; eigen-decompositions use `eigh` (deterministic,
symmetric) rather than a general solver, and no function builds a batch×batch or unbounded
batch×train matrix.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import NDArray

from stream_monitor.baselines._common import Float64Array, HeadDetector
from stream_monitor.baselines.logit_based import energy_score, max_logit_score
from stream_monitor.errors import InputError


def eigh_descending(sym: Float64Array) -> tuple[Float64Array, Float64Array]:
    """Eigenvalues (K,) in descending order and eigenvectors as columns (K, K) of a symmetric matrix."""
    vals, vecs = np.linalg.eigh(sym)
    order = np.argsort(vals)[::-1]
    return vals[order], vecs[:, order]


def shared_class_covariance(
    features: Float64Array, labels: NDArray[np.int64], n_classes: int
) -> tuple[Float64Array, Float64Array]:
    """Class means (C, D) and the shared covariance (D, D) of class-centred features (divisor N).

    As Lee et al. 2018: one covariance for all classes, maximum-likelihood normalisation (like sklearn's
    EmpiricalCovariance). Every class needs at least one sample.
    """
    counts = np.bincount(labels, minlength=n_classes)
    if np.any(counts == 0):
        missing = np.flatnonzero(counts == 0).tolist()
        raise InputError(f"classes {missing} have no training samples; cannot estimate their means")
    means = np.zeros((n_classes, features.shape[1]))
    np.add.at(means, labels, features)
    means /= counts[:, None]
    centred = features - means[labels]
    return means, centred.T @ centred / features.shape[0]


def pinv_sqrt(cov: Float64Array) -> Float64Array:
    """A (D, r) matrix L with `L @ L.T = pinv(cov)`, from `eigh`; r = numerical rank of `cov`.

    Eigenvalues below `D * eps * max_eigenvalue` count as zero, as `numpy.linalg.pinv` does by default.
    Whitening with L keeps every squared distance a sum of squares, hence >= 0 even for singular `cov`.
    """
    vals, vecs = eigh_descending(cov)
    keep = vals > cov.shape[0] * np.finfo(np.float64).eps * max(vals[0], 0.0)
    if not np.any(keep):
        raise InputError("the class-centred covariance is zero: all train features equal their class mean")
    return vecs[:, keep] / np.sqrt(vals[keep])


def mahalanobis_score(features: Float64Array, class_means: Float64Array, whitener: Float64Array) -> Float64Array:
    """Minimum Mahalanobis distance to a class mean (Lee et al. 2018, single layer, no input noise).

    `score = min_c (a - mu_c)^T Sigma^+ (a - mu_c)` with `Sigma^+ = L L^T` (see `pinv_sqrt`).
    features (N, D), class_means (C, D), whitener L (D, r) -> (N,) float64, higher = more OOD.
    Loops over classes so memory is O(N·r), never N×N.
    """
    projected = features @ whitener
    means_projected = class_means @ whitener
    best = np.full(features.shape[0], np.inf)
    for mu in means_projected:
        diff = projected - mu
        np.minimum(best, np.einsum("nr,nr->n", diff, diff), out=best)
    return best


def vim_default_dim(n_features: int) -> int:
    """Principal-space dimension of ViM by the rule of Wang et al. 2022 / the NERO reference code."""
    return 1000 if n_features >= 2048 else 512 if n_features >= 768 else n_features // 2


def vim_null_space(
    features: Float64Array, weight: Float64Array, bias: Float64Array, dim: int
) -> tuple[Float64Array, Float64Array]:
    """ViM's origin `u = -pinv(W) b` (D,) and the residual basis NS (D, D - dim).

    NS holds the eigenvectors of the uncentred covariance of `a - u` past the `dim` largest ones, as
    the official code does (`EmpiricalCovariance(assume_centered=True)`).
    """
    u = -np.linalg.pinv(weight) @ bias
    shifted = features - u
    _, vecs = eigh_descending(shifted.T @ shifted / features.shape[0])
    return u, np.ascontiguousarray(vecs[:, dim:])


def vim_residual_norm(features: Float64Array, origin: Float64Array, null_space: Float64Array) -> Float64Array:
    """`||(a - u) NS||` per row: (N, D), (D,), (D, D - dim) -> (N,) float64."""
    return np.linalg.norm((features - origin) @ null_space, axis=1)


def vim_alpha(train_logits: Float64Array, train_residual_norm: Float64Array) -> float:
    """ViM's scale `alpha = mean_i max_c f_ic / mean_i ||(a_i - u) NS||` on the ID train set (Wang 2022)."""
    denominator = float(np.mean(train_residual_norm))
    if denominator <= 0.0:
        raise InputError("ViM: train features have no component outside the principal space; alpha undefined")
    return float(np.mean(np.max(train_logits, axis=1))) / denominator


def vim_score(logits: Float64Array, residual_norm: Float64Array, alpha: float) -> Float64Array:
    """Virtual-logit matching (Wang et al. 2022).

    `score = -(logsumexp(f) - alpha * ||(a - u) NS||)` = energy + alpha * residual norm.
    logits (N, C), residual_norm (N,) -> (N,) float64, higher = more OOD.
    """
    return energy_score(logits) + alpha * residual_norm


def l2_normalise(features: Float64Array) -> Float64Array:
    """Rows divided by `||row|| + 1e-10`, exactly as Sun et al. 2022's code (zero rows stay zero)."""
    return features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-10)


def kth_neighbour_distance(
    queries: Float64Array, bank: Float64Array, k: int, max_chunk_bytes: int = 64 * 2**20
) -> Float64Array:
    """Euclidean distance from each query (N, D) to its k-th nearest row of `bank` (M, D): (N,) float64.

    Works on chunks of queries so that the (chunk, M) temporaries (three float64/int64 blocks: the
    products, the distances, argpartition's indices) stay under about `max_chunk_bytes` together.
    The k-th neighbour is chosen with the fast `|q|^2 + |b|^2 - 2 q.b` expansion, then its distance is
    recomputed from the difference vector, which avoids that expansion's cancellation error.
    """
    if not 1 <= k <= bank.shape[0]:
        raise InputError(f"k must lie in [1, {bank.shape[0]}] (the bank size); got {k}")
    rows = max(1, int(max_chunk_bytes) // (3 * 8 * bank.shape[0]))
    bank_sq = np.einsum("md,md->m", bank, bank)
    out = np.empty(queries.shape[0])
    for start in range(0, queries.shape[0], rows):
        q = queries[start : start + rows]
        sq = bank_sq - 2.0 * (q @ bank.T)  # + |q|^2, constant per row, does not change the order
        kth = np.argpartition(sq, k - 1, axis=1)[:, k - 1]
        out[start : start + rows] = np.linalg.norm(q - bank[kth], axis=1)
    return out


def knn_score(
    features: Float64Array, normalised_train: Float64Array, k: int = 50, max_chunk_bytes: int = 64 * 2**20
) -> Float64Array:
    """Deep nearest neighbours (Sun et al. 2022).

    `score = ||z - z_(k)||`, z the L2-normalised feature and z_(k) its k-th nearest normalised train
    feature. The paper's ID score is minus this distance (its faiss index returns squared distances; the
    square root does not change the ranking). features (N, D), normalised_train (M, D) -> (N,) float64.
    """
    return kth_neighbour_distance(l2_normalise(features), normalised_train, k, max_chunk_bytes)


def standard_scaler(features: Float64Array) -> tuple[Float64Array, Float64Array]:
    """Per-feature mean and population std (D,) of the train set; constant features get std 1.

    The guard mirrors sklearn's StandardScaler, which the NECO code uses, so constant (dead) units do
    not divide by zero.
    """
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    constant = scale < 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mean))
    return mean, np.where(constant, 1.0, scale)


def pca_components(data: Float64Array) -> tuple[Float64Array, Float64Array]:
    """PCA mean (D,) and components (K, D), K = min(N, D), by decreasing variance (eigh, no whitening)."""
    mean = data.mean(axis=0)
    centred = data - mean
    _, vecs = eigh_descending(centred.T @ centred)
    return mean, np.ascontiguousarray(vecs[:, : min(data.shape)].T)


def neco_score(
    scaled: Float64Array,
    pca_mean: Float64Array,
    components: Float64Array,
    max_logit: Float64Array | None = None,
) -> Float64Array:
    """Neural collapse score NECO (Ben Ammar et al. 2024).

    `score = -||PCA(z)|| / ||z||`, z the standard-scaled feature, PCA(z) its projection on the given
    components (pass the top `dim` rows). With `max_logit` (N,) (the paper's choice for ViTs) the ratio
    is multiplied by it before negation. scaled (N, D), pca_mean (D,), components (dim, D) -> (N,).
    A row with `||z|| = 0` (exactly the train mean) gets ratio 1: nothing about it is unexplained.
    """
    numerator = np.linalg.norm((scaled - pca_mean) @ components.T, axis=1)
    denominator = np.linalg.norm(scaled, axis=1)
    ratio = np.divide(numerator, denominator, out=np.ones_like(numerator), where=denominator > 0)
    if max_logit is not None:
        ratio = ratio * max_logit
    return -ratio


class Mahalanobis(HeadDetector):
    """Minimum class-conditional Mahalanobis distance with a shared covariance; see `mahalanobis_score`."""

    name = "mahalanobis"

    def _fit_train(self, features: Float64Array, labels: NDArray[np.int64]) -> None:
        self.class_means_, covariance = shared_class_covariance(features, labels, self.n_classes)
        self.whitener_ = pinv_sqrt(covariance)

    def _score(self, features: Float64Array) -> Float64Array:
        return mahalanobis_score(features, self.class_means_, self.whitener_)


class ViM(HeadDetector):
    """Virtual-logit matching (Wang et al. 2022); see `vim_score`.

    `dim=None` picks `vim_default_dim(D)`: D//2 below 768, 512 from 768, 1000 from 2048.
    """

    name = "vim"

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        if dim is not None and int(dim) < 0:
            raise InputError(f"dim must be >= 0; got {dim!r}")
        self.dim = None if dim is None else int(dim)

    def _fit_train(self, features: Float64Array, labels: NDArray[np.int64]) -> None:
        d = features.shape[1]
        self.dim_ = vim_default_dim(d) if self.dim is None else self.dim
        if self.dim_ >= d:
            raise InputError(f"ViM needs dim < D to leave a residual space; got dim={self.dim_}, D={d}")
        self.origin_, self.null_space_ = vim_null_space(features, *self.head(), self.dim_)
        train_norm = vim_residual_norm(features, self.origin_, self.null_space_)
        self.alpha_ = vim_alpha(self.logits(features), train_norm)
        if features.shape[0] <= self.dim_:
            # rank(a - u) <= N <= dim: the residual space holds no train direction at all
            warnings.warn(f"ViM: dim {self.dim_} >= the {features.shape[0]} train rows, so every train row lies in "
                          f"the principal space: its residual is numerical noise (mean {float(train_norm.mean()):.1e}) "
                          f"and so is alpha ({self.alpha_:.1e}); scores then rank by the residual norm alone and can "
                          "differ between BLAS builds. Fit on more rows than dim, or pass a smaller dim.",
                          UserWarning, stacklevel=3)

    def _score(self, features: Float64Array) -> Float64Array:
        residual = vim_residual_norm(features, self.origin_, self.null_space_)
        return vim_score(self.logits(features), residual, self.alpha_)


class NECO(HeadDetector):
    """Neural collapse score (Ben Ammar et al. 2024); see `neco_score`.

    `dim` is clipped to the number of PCA components available, min(N_train, D).
    `scale_by_max_logit=True` multiplies by the max logit, as the paper does for ViT backbones.
    """

    name = "neco"

    def __init__(self, dim: int = 100, scale_by_max_logit: bool = False) -> None:
        super().__init__()
        if int(dim) < 1:
            raise InputError(f"dim must be >= 1; got {dim!r}")
        self.dim = int(dim)
        self.scale_by_max_logit = bool(scale_by_max_logit)

    def _fit_train(self, features: Float64Array, labels: NDArray[np.int64]) -> None:
        self.feature_mean_, self.feature_scale_ = standard_scaler(features)
        self.pca_mean_, components = pca_components((features - self.feature_mean_) / self.feature_scale_)
        self.dim_ = min(self.dim, components.shape[0])
        self.components_ = components[: self.dim_]

    def _score(self, features: Float64Array) -> Float64Array:
        scaled = (features - self.feature_mean_) / self.feature_scale_
        # The paper's ID score is ratio * max logit; negating it keeps higher = more OOD.
        max_logit = -max_logit_score(self.logits(features)) if self.scale_by_max_logit else None
        return neco_score(scaled, self.pca_mean_, self.components_, max_logit)


class KNN(HeadDetector):
    """Distance to the k-th nearest L2-normalised ID train feature (Sun et al. 2022); see `knn_score`.

    `k` is clipped to the number of train samples. The whole normalised train set is kept (N_train×D).
    """

    name = "knn"

    def __init__(self, k: int = 50, max_chunk_bytes: int = 64 * 2**20) -> None:
        super().__init__()
        if int(k) < 1:
            raise InputError(f"k must be >= 1; got {k!r}")
        if int(max_chunk_bytes) < 1:
            raise InputError(f"max_chunk_bytes must be >= 1; got {max_chunk_bytes!r}")
        self.k = int(k)
        self.max_chunk_bytes = int(max_chunk_bytes)

    def _fit_train(self, features: Float64Array, labels: NDArray[np.int64]) -> None:
        self.train_ = l2_normalise(features)
        self.k_ = min(self.k, features.shape[0])

    def _score(self, features: Float64Array) -> Float64Array:
        return knn_score(features, self.train_, self.k_, self.max_chunk_bytes)
