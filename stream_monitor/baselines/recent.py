"""Post-hoc detectors of 2021-2025 that need only the penultimate features and the linear head:
Residual, RMDS, fDBD, NNGuide, NCI.

OpenMIBOOD (CVPR 2025) found feature-space scores (Residual, Mahalanobis family) far ahead of logit scores
on medical images; fDBD, NNGuide and NCI are the strongest recent scores that read the classifier head.
As elsewhere in this package the maths are pure float64 functions and every score is oriented higher =
more OOD (each paper's ID confidence, negated).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from ._common import Float64Array, HeadDetector, logsumexp
from .feature_based import (
    l2_normalise,
    mahalanobis_score,
    pinv_sqrt,
    shared_class_covariance,
    vim_default_dim,
    vim_null_space,
    vim_residual_norm,
)


def rmds_score(features: Float64Array, class_means: Float64Array, class_whitener: Float64Array,
               background_mean: Float64Array, background_whitener: Float64Array) -> Float64Array:
    """Relative Mahalanobis distance (Ren et al. 2021, "A simple fix to Mahalanobis distance").

    `score = min_c [MD_c(a) - MD_0(a)]`: MD_c the squared Mahalanobis distance to class mean c under the
    shared class-centred covariance, MD_0 the one to the mean of all train features under their whole
    covariance (the "background" Gaussian). Whiteners are `pinv_sqrt` of each covariance (pseudo-inverse,
    as OpenOOD's sklearn EmpiricalCovariance). (N, D) -> (N,) float64, higher = more OOD.
    """
    background = mahalanobis_score(features, background_mean[None, :], background_whitener)
    return mahalanobis_score(features, class_means, class_whitener) - background


def fdbd_score(features: Float64Array, logits: Float64Array, weight: Float64Array,
               train_mean: Float64Array) -> Float64Array:
    """Fast decision-boundary distance fDBD (Liu & Qin, ICML 2024), negated.

    ID confidence = mean over c != ŷ of `|f_ŷ - f_c| / ||w_ŷ - w_c||` (the distance of `a` to the
    boundary between ŷ and c), divided by `||a - mu_train||`. Needs C >= 2. A feature equal to the train
    mean (zero denominator) is treated as at distance 1e-8, as pytorch-ood does.
    features (N, D), logits (N, C), weight (C, D), train_mean (D,) -> (N,) float64.
    """
    n_classes = weight.shape[0]
    if n_classes < 2:
        raise InputError("fDBD needs a head with at least 2 classes (a decision boundary)")
    predicted = np.argmax(logits, axis=1)
    margins = np.abs(logits - logits[np.arange(len(logits)), predicted][:, None])  # 0 at c = ŷ
    pair_norms = np.linalg.norm(weight[:, None, :] - weight[None, :, :], axis=2)
    np.fill_diagonal(pair_norms, 1.0)  # the c = ŷ term is 0 / 1
    if np.any(pair_norms <= 0):
        raise InputError("fDBD: two classes have identical head weights; their boundary is undefined")
    boundary = np.sum(margins / pair_norms[predicted], axis=1) / (n_classes - 1)
    spread = np.maximum(np.linalg.norm(features - train_mean, axis=1), 1e-8)
    return -boundary / spread


def nnguide_bank(train_features: Float64Array, train_logits: Float64Array) -> Float64Array:
    """NNGuide's guide bank: each L2-normalised train feature times its energy confidence logsumexp(f)."""
    return l2_normalise(train_features) * logsumexp(train_logits, axis=1)[:, None]


def nnguide_score(features: Float64Array, logits: Float64Array, bank: Float64Array, k: int) -> Float64Array:
    """Nearest-neighbour guidance NNGuide (Park et al., ICCV 2023), negated.

    ID confidence = logsumexp(f) · mean of the k largest inner products between the L2-normalised
    feature and the guide bank (`nnguide_bank`). features (N, D), logits (N, C), bank (M, D) -> (N,).
    """
    if not 1 <= k <= bank.shape[0]:
        raise InputError(f"k must lie in [1, {bank.shape[0]}] (the bank size); got {k}")
    similarity = l2_normalise(features) @ bank.T
    top = np.partition(similarity, similarity.shape[1] - k, axis=1)[:, similarity.shape[1] - k:]
    return -top.mean(axis=1) * logsumexp(logits, axis=1)


def nci_score(features: Float64Array, logits: Float64Array, weight: Float64Array, train_mean: Float64Array,
              alpha: float = 0.0) -> Float64Array:
    """Neural-collapse inspired score NCI (Liu & Qin, CVPR 2025), negated.

    ID confidence = `w_ŷ · (a - mu) / ||a - mu||` (alignment of the centred feature with the predicted
    class's weight; `||w_ŷ||` is not divided out, as in the authors' and OpenOOD's code) plus
    `alpha · ||a||_1`. A feature equal to the train mean gets alignment 0.
    features (N, D), logits (N, C), weight (C, D), train_mean (D,) -> (N,) float64.
    """
    centred = features - train_mean
    alignment = np.einsum("nd,nd->n", centred, weight[np.argmax(logits, axis=1)])
    norm = np.linalg.norm(centred, axis=1)
    proximity = np.divide(alignment, norm, out=np.zeros_like(alignment), where=norm > 0)
    return -(proximity + alpha * np.abs(features).sum(axis=1))


class Residual(HeadDetector):
    """ViM's residual alone (Wang et al. 2022; OpenOOD "Residual"): `score = ||(a - u) NS||`.

    u = -pinv(W) b, NS the eigenvectors of the uncentred covariance of `a - u` past the top `dim`.
    No energy term: the evidence is purely where the feature lies. `dim=None` takes `vim_default_dim(D)`
    but at most N_train // 2: past the training set's rank the eigenvectors span a null space in an
    arbitrary basis, and which of them land in "principal" would then be arbitrary too (D = 1280 from
    280 training images here).
    """

    name = "residual"

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        if dim is not None and int(dim) < 1:
            raise InputError(f"dim must be >= 1; got {dim!r}")
        self.dim = None if dim is None else int(dim)

    def _fit_train(self, features: Float64Array, labels: NDArray[np.int64]) -> None:
        d = features.shape[1]
        self.dim_ = min(vim_default_dim(d), max(1, features.shape[0] // 2)) if self.dim is None else self.dim
        if self.dim_ >= d:
            raise InputError(f"Residual needs dim < D to leave a residual space; got dim={self.dim_}, D={d}")
        self.origin_, self.null_space_ = vim_null_space(features, *self.head(), self.dim_)

    def _score(self, features: Float64Array) -> Float64Array:
        return vim_residual_norm(features, self.origin_, self.null_space_)


class RMDS(HeadDetector):
    """Relative Mahalanobis distance (Ren et al. 2021); see `rmds_score`."""

    name = "rmds"

    def _fit_train(self, features: Float64Array, labels: NDArray[np.int64]) -> None:
        self.class_means_, covariance = shared_class_covariance(features, labels, self.n_classes)
        self.class_whitener_ = pinv_sqrt(covariance)
        self.background_mean_ = features.mean(axis=0)
        centred = features - self.background_mean_
        self.background_whitener_ = pinv_sqrt(centred.T @ centred / features.shape[0])

    def _score(self, features: Float64Array) -> Float64Array:
        return rmds_score(features, self.class_means_, self.class_whitener_, self.background_mean_,
                          self.background_whitener_)


class FDBD(HeadDetector):
    """Fast decision-boundary distance (Liu & Qin 2024); hyperparameter-free; see `fdbd_score`."""

    name = "fdbd"

    def _fit_train(self, features: Float64Array, labels: NDArray[np.int64]) -> None:
        if self.n_classes < 2:
            raise InputError("fDBD needs a head with at least 2 classes (a decision boundary)")
        self.train_mean_ = features.mean(axis=0)

    def _score(self, features: Float64Array) -> Float64Array:
        return fdbd_score(features, self.logits(features), self.head()[0], self.train_mean_)


class NNGuide(HeadDetector):
    """Nearest-neighbour guidance (Park et al. 2023); see `nnguide_score`.

    The bank is the whole ID train set (the paper subsamples ImageNet to 1 %; ours has a few hundred
    images). `k` (default 10, as pytorch-ood) is clipped to the bank size.
    """

    name = "nnguide"

    def __init__(self, k: int = 10) -> None:
        super().__init__()
        if int(k) < 1:
            raise InputError(f"k must be >= 1; got {k!r}")
        self.k = int(k)

    def _fit_train(self, features: Float64Array, labels: NDArray[np.int64]) -> None:
        self.bank_ = nnguide_bank(features, self.logits(features))
        self.k_ = min(self.k, features.shape[0])

    def _score(self, features: Float64Array) -> Float64Array:
        return nnguide_score(features, self.logits(features), self.bank_, self.k_)


class NCI(HeadDetector):
    """Neural-collapse inspired score (Liu & Qin 2025); see `nci_score`.

    `alpha` weighs the L1 feature norm; default 0 (pytorch-ood's default: the paper tunes it per model
    on OOD data, which this project never does).
    """

    name = "nci"

    def __init__(self, alpha: float = 0.0) -> None:
        super().__init__()
        alpha = float(alpha)
        if not np.isfinite(alpha) or alpha < 0:
            raise InputError(f"alpha must be a finite number >= 0; got {alpha!r}")
        self.alpha = alpha

    def _fit_train(self, features: Float64Array, labels: NDArray[np.int64]) -> None:
        self.train_mean_ = features.mean(axis=0)

    def _score(self, features: Float64Array) -> Float64Array:
        return nci_score(features, self.logits(features), self.head()[0], self.train_mean_, self.alpha)
