"""NERO-based fusions: NERO's relevance geometry combined with feature-space evidence.

Two kinds, both behind the detector contract `fit(features, labels, weight, bias) -> self`,
`score(features) -> (N,)` (higher = more OOD):

- `ZScoreFusion`: the sum of z-scored component scores. Each component's ID mean and std come from
  *out-of-fold* train scores (fit on one half of the ID train set, score the other, and back), because a
  detector scores its own training frames too well (KNN finds the frame itself, a PCA residual is
  smallest on the frames it was fitted on); then every component is refitted on the whole train set.
- `WhitenedRelevanceDistance`: NERO's relevance (robust ε) projected on its top principal components of
  the train relevances and *whitened* there, then the distance to the nearest class centroid — NERO's
  relevance distance with a Mahalanobis metric instead of L1 in an unwhitened PCA space.

Nothing OOD is used to fit either.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from ..errors import InputError
from ..nero import NeroDetector
from ..nero.functional import class_means, fit_pca, head_relevance, pca_transform
from . import create_baseline
from .block_stats import BlockStatsMahalanobis

Factory = Callable[[], Any]

NERO_RESIDUAL = {"mode": "robust", "pca_components": 50, "use_distance": False, "use_bias": False,
                 "use_rho": False, "use_residual": True}
"""The shipped default's NERO configuration (relevance residual outside 50 train components)."""


class NeroResidual:
    """NERO_RESIDUAL, with its 50 components clipped to half the train rank on small inputs (a toy
    problem, a fold of a tiny train set), where 50 would be invalid or leave no residual."""

    def fit(self, features: np.ndarray, labels: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> "NeroResidual":
        components = min(NERO_RESIDUAL["pca_components"], min(np.shape(features)) // 2)
        self.detector_ = NeroDetector(**{**NERO_RESIDUAL, "pca_components": components})
        self.detector_.fit(features, labels, weight, bias)
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        return self.detector_.score(features)


def nero_residual() -> NeroResidual:
    return NeroResidual()


def _stratified_halves(labels: np.ndarray, seed: int,
                       groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two index sets, each holding about half of every class (fixed seed). With `groups` (one id per sample,
    e.g. the source image of augmented copies) the halves are drawn over groups, so a group never spans both."""
    labels = np.asarray(labels)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    if groups.shape != labels.shape:
        raise InputError(f"groups must give one id per train sample: {groups.shape} for {labels.shape} labels")
    ids, first_index = np.unique(groups, return_index=True)
    group_labels = labels[first_index]
    if np.any(labels != group_labels[np.searchsorted(ids, groups)]):
        raise InputError("every sample of a group must have the group's class")
    rng = np.random.default_rng(seed)
    first = []
    for c in np.unique(group_labels):
        members = rng.permutation(ids[group_labels == c])
        first.extend(members[: len(members) // 2])
    mask = np.isin(groups, first)
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def stack_copies(views: Sequence[np.ndarray], labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of one train set (the images as stored, then transformed copies, each in the train order) →
    (features (V·N, ·) float64, labels tiled, groups: each row's source image index) for `fit_detector`."""
    labels = np.asarray(labels)
    return (np.vstack(views).astype(np.float64), np.tile(labels, len(views)),
            np.tile(np.arange(len(labels)), len(views)))


def fit_detector(detector: Any, features: np.ndarray, labels: np.ndarray, weight: np.ndarray, bias: np.ndarray,
                 groups: np.ndarray | None = None) -> Any:
    """`detector.fit(...)`, handing `groups` (each row's source image) to a z-score fusion, which draws its
    out-of-fold halves by source; other detectors keep no out-of-fold statistics and need none."""
    if groups is not None and isinstance(detector, ZScoreFusion):
        return detector.fit(features, labels, weight, bias, groups=groups)
    return detector.fit(features, labels, weight, bias)


class ZScoreFusion:
    """Sum of component scores, each standardised by its out-of-fold ID train mean and std.

    `fit(..., groups=...)` keeps augmented copies of one train image in the same half (see
    `_stratified_halves`): a copy scored by a detector fitted on its own original would look too normal."""

    def __init__(self, components: Sequence[Factory], names: Sequence[str] = (), seed: int = 0) -> None:
        if len(components) < 2:
            raise InputError("a fusion needs at least two components")
        self.components = list(components)
        self.names = list(names) or [f"component{i}" for i in range(len(components))]
        self.seed = seed

    def fit(self, features: np.ndarray, labels: np.ndarray, weight: np.ndarray, bias: np.ndarray,
            groups: np.ndarray | None = None) -> "ZScoreFusion":
        features, labels = np.asarray(features, np.float64), np.asarray(labels)
        a, b = _stratified_halves(labels, self.seed, groups)
        if min(len(a), len(b)) < 2:
            raise InputError("a fusion needs at least 4 train samples to standardise out of fold")
        self.feature_dim_ = int(np.shape(weight)[1])
        self.mean_, self.std_, self.detectors_ = [], [], []
        for factory in self.components:
            x = self._view(factory(), features)
            held_out = np.concatenate([
                factory().fit(x[a], labels[a], weight, bias).score(x[b]),
                factory().fit(x[b], labels[b], weight, bias).score(x[a]),
            ])
            std = float(np.std(held_out))
            self.mean_.append(float(np.mean(held_out)))
            self.std_.append(std if std > 0 else 1.0)
            self.detectors_.append(factory().fit(x, labels, weight, bias))
        return self

    def _view(self, detector: Any, features: np.ndarray) -> np.ndarray:
        """The columns `detector` reads: all of them if it uses block statistics, else the first D.
        (Artifacts written before extended features lack feature_dim_: their inputs are D wide.)"""
        dim = getattr(self, "feature_dim_", None)
        if getattr(detector, "uses_block_stats", False) or dim is None:
            return features
        return features[:, :dim]

    def component_z(self, features: np.ndarray) -> np.ndarray:
        """(N, K) standardised component scores."""
        features = np.asarray(features, np.float64)
        return np.stack([(det.score(self._view(det, features)) - m) / s
                         for det, m, s in zip(self.detectors_, self.mean_, self.std_)], axis=1)

    def score(self, features: np.ndarray) -> np.ndarray:
        return self.component_z(features).sum(axis=1)


class WhitenedRelevanceDistance:
    """min_c ‖Λ^{-1/2} Vᵀ (R(a) − μ_R) − ν_c‖₂: NERO relevance, PCA-whitened, nearest class centroid."""

    def __init__(self, components: int = 50, epsilon: float = 1e-6) -> None:
        if components < 1:
            raise InputError(f"components must be >= 1; got {components}")
        self.components, self.epsilon = int(components), float(epsilon)

    def _relevance(self, features: np.ndarray) -> np.ndarray:
        return head_relevance(np.asarray(features, np.float64), self.weight_, self.bias_, "sign", self.epsilon).neurons

    def fit(self, features: np.ndarray, labels: np.ndarray, weight: np.ndarray,
            bias: np.ndarray) -> "WhitenedRelevanceDistance":
        self.weight_, self.bias_ = np.asarray(weight, np.float64), np.asarray(bias, np.float64)
        relevance = self._relevance(features)
        k = min(self.components, relevance.shape[0] - 1, relevance.shape[1])
        self.pca_ = fit_pca(relevance, k)
        scale = np.sqrt(np.maximum(self.pca_.explained_variance, np.finfo(np.float64).tiny))
        self.scale_ = scale
        whitened = pca_transform(relevance, self.pca_) / scale
        labels = np.asarray(labels)
        self.centroids_ = class_means(whitened, labels, int(labels.max()) + 1)
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        whitened = pca_transform(self._relevance(features), self.pca_) / self.scale_
        distances = np.linalg.norm(whitened[:, None, :] - self.centroids_[None, :, :], axis=2)
        return distances.min(axis=1)


def _part_factories() -> dict[str, Callable[..., Any]]:
    """Each fusion component by name → its constructor (keyword options, e.g. bstats(shrinkage=0.3))."""
    return {"nero-r": nero_residual, "neco": partial(create_baseline, "neco"), "knn": partial(create_baseline, "knn"),
            "residual": partial(create_baseline, "residual"), "rmds": partial(create_baseline, "rmds"),
            "wrel": WhitenedRelevanceDistance, "bstats": BlockStatsMahalanobis}


FUSION_COMBOS: tuple[tuple[str, ...], ...] = (
    ("nero-r", "neco"), ("nero-r", "knn"), ("nero-r", "residual"), ("nero-r", "rmds"), ("nero-r", "neco", "knn"),
    ("nero-r", "wrel"), ("neco", "knn"), ("neco", "bstats"), ("nero-r", "neco", "bstats"))
"""The z-score fusions evaluated (and servable): NERO's relevance residual with feature-space evidence,
controls without NERO, and the mid-level block statistics (`bstats`) beside NECO."""

WHITENED_DISTANCE = "nero_whitened_distance"
BLOCK_STATS = "block_stats_mahalanobis"
"""The block-statistics Mahalanobis alone (baselines/block_stats.py)."""


def is_zscore_fusion(name: str) -> bool:
    """Whether `name` is a z-score fusion (its options are given per component)."""
    return any(fusion_name(combo) == name for combo in FUSION_COMBOS)


def needs_block_stats(name: str) -> bool:
    """Whether the detector named `name` reads the extended features `[feature | block statistics]`."""
    return name == BLOCK_STATS or "z(bstats)" in name


def fusion_name(combo: Sequence[str]) -> str:
    """'fusion z(nero-r)+z(neco)': the name reports and the evaluation's method tables use."""
    return "fusion " + "+".join(f"z({name})" for name in combo)


def fusion_factories() -> dict[str, Factory]:
    """Every fusion by its report name → a factory of a new, unfitted one (default options)."""
    parts = _part_factories()
    out: dict[str, Factory] = {WHITENED_DISTANCE: lambda: WhitenedRelevanceDistance(50),
                               BLOCK_STATS: BlockStatsMahalanobis}
    for combo in FUSION_COMBOS:
        out[fusion_name(combo)] = lambda c=combo: ZScoreFusion([parts[name] for name in c], c)
    return out


def create_fusion(name: str, options: Mapping[str, Any] | None = None) -> Any:
    """A new, unfitted fusion `name` with constructor options.

    For a z-score fusion, `options` maps a component to its own options, e.g.
    `create_fusion("fusion z(neco)+z(bstats)", {"bstats": {"shrinkage": 0.3}})`; for the single-detector
    fusions (`nero_whitened_distance`, `block_stats_mahalanobis`) it holds the constructor's keyword
    options. Unknown names, components or options raise `InputError` here, not at fit time."""
    options = dict(options or {})
    factories = fusion_factories()
    if name not in factories:
        raise InputError(f"unknown fusion {name!r}; known: {', '.join(sorted(factories))}")
    if not is_zscore_fusion(name):  # a single detector: its own keyword options
        cls = {WHITENED_DISTANCE: WhitenedRelevanceDistance, BLOCK_STATS: BlockStatsMahalanobis}[name]
        return _construct(cls, options, name)
    combo = next(c for c in FUSION_COMBOS if fusion_name(c) == name)
    unknown = sorted(set(options) - set(combo))
    if unknown:
        raise InputError(f"the fusion {name!r} has no component {unknown[0]!r}; its components: {', '.join(combo)}")
    parts = _part_factories()
    factories_with_options = []
    for part in combo:
        part_options = options.get(part, {})
        if not isinstance(part_options, Mapping):
            raise InputError(f"options of the component {part!r} must be a mapping of option → value, "
                             f"e.g. {{{part!r}: {{'shrinkage': 0.3}}}}; got {part_options!r}")
        _construct(parts[part], part_options, part)  # validate now
        factories_with_options.append(partial(parts[part], **part_options))
    return ZScoreFusion(factories_with_options, combo)


def _construct(factory: Callable[..., Any], options: Mapping[str, Any], name: str) -> Any:
    try:
        return factory(**options)
    except TypeError as exc:
        raise InputError(f"bad options for {name!r}: {exc}") from exc
