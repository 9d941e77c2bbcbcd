"""NeroDetector: fits NERO on ID training features, scores, explains, calibrates, saves and loads.

The math lives in `functional.py`; this class holds the fitted state and wires the steps. Scores are
float64 and oriented higher = more OOD.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .. import artifact
from ..calibration import Calibration, calibrate_threshold
from ..errors import ArtifactError, InputError, NotFittedError
from . import functional as F
from .config import NeroConfig

ARTIFACT_KIND = "nero"
_ARRAYS = ("weight", "bias", "pca_mean", "pca_components", "centroids", "centroid_labels", "raw_class_means")


@dataclass(frozen=True)
class NeroParts:
    """A batch's score and everything it was made of; arrays have N rows.

    score (N,) = (distance + bias_term) · rho [· residual] with disabled terms left out; distance (N,) L1
    to the nearest centroid in PCA space; bias_term (N,) = λ·|bias relevance|; rho (N,); residual (N,)
    share of the centred relevance outside the PCA subspace (always computed); relevance (N, D)
    neuron relevances; bias_relevance (N,); nearest_class (N,) class of the nearest centroid;
    logits (N, C); probs (N, C); stabilized: logits the ε rule moved in this batch.
    """

    score: np.ndarray
    distance: np.ndarray
    bias_term: np.ndarray
    rho: np.ndarray
    residual: np.ndarray
    relevance: np.ndarray
    bias_relevance: np.ndarray
    nearest_class: np.ndarray
    logits: np.ndarray
    probs: np.ndarray
    stabilized: int


@dataclass(frozen=True)
class Explanation:
    """Why a batch scored as it did: the parts, and the neurons that deviate most from the nearest class.

    reference_class (N,) nearest raw class centroid (L1 over the D+1 relevances); top_neurons (N, n)
    neuron indices by |R_d − μ_{c,d}|, largest first; deviations (N, n) the signed R_d − μ_{c,d}.
    """

    parts: NeroParts
    reference_class: np.ndarray
    top_neurons: np.ndarray
    deviations: np.ndarray


class NeroDetector:
    """NERO (Chhetri et al., MICCAI 2025): neuron-level relevance at the classifier head.

        NERO(x) = ( min_c ‖PCA(R(x)) − μ_c‖₁ + λ·|R_bias(x)| ) · ρ(x)

    `NeroDetector(mode="parity")` reproduces the reference code (docs/NERO.md); `mode="robust"`
    stabilises the relevance and scales k with D. Any `NeroConfig` field can be passed by keyword.
    """

    name = "nero"

    def __init__(self, mode: str = "parity", config: NeroConfig | None = None, **overrides: Any) -> None:
        if config is not None and overrides:
            raise InputError("pass either config= or keyword hyperparameters, not both")
        self.config = config if config is not None else NeroConfig.preset(mode, **overrides)
        self._state: dict[str, np.ndarray] | None = None
        self.lambda_: float = 0.0
        self.k_: int = 0
        self.class_names: list[str] = []
        self.calibration: Calibration | None = None
        self.fit_info: dict[str, Any] = {}

    # ----------------------------------------------------------------- fitting
    def fit(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray,
        class_names: Sequence[str] | None = None,
        model_sha256: str | None = None,
    ) -> "NeroDetector":
        """Fit on ID training data: features (N, D), labels (N,) class ids, head weight (C, D), bias (C,)."""
        weight, bias = _check_head(weight, bias)
        n_classes, n_features = weight.shape
        features = _check_features(features, n_features, "training features")
        labels = _check_labels(labels, len(features), n_classes)
        cfg = self.config
        k = cfg.resolve_k(n_features)
        n_components, clipped = cfg.resolve_pca_components(n_features, len(features))
        if clipped:
            warnings.warn(
                f"PCA components clipped to {n_components} (the rank of {len(features)} training "
                f"samples) from floor({cfg.pca_fraction:.3f}·D) = {int(cfg.pca_fraction * n_features)}",
                stacklevel=2,
            )

        rel = F.head_relevance(features, weight, bias, cfg.stabilizer, cfg.epsilon)
        pca = F.fit_pca(rel.neurons, n_components)
        projected = F.pca_transform(rel.neurons, pca)
        centroids, centroid_labels = self._centroids(projected, labels, n_classes)
        raw = np.concatenate([rel.neurons, rel.bias[:, None]], axis=1)
        raw_means = F.class_means(raw, labels, n_classes)
        if cfg.lambda_space == "raw":
            numerator = F.l1_distances(raw, raw_means).min(axis=1)
        else:
            numerator = F.l1_distances(projected, centroids).min(axis=1)

        self.lambda_ = F.bias_scale(numerator, rel.bias)
        self.k_ = k
        self._state = {
            "weight": weight,
            "bias": bias,
            "pca_mean": pca.mean,
            "pca_components": pca.components,
            "centroids": centroids,
            "centroid_labels": centroid_labels,
            "raw_class_means": raw_means,
        }
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in range(n_classes)]
        if len(self.class_names) != n_classes:
            raise InputError(f"{len(self.class_names)} class names for a head with C = {n_classes} classes")
        self.calibration = None
        self.fit_info = {
            "n_train": int(len(features)),
            "train_class_counts": np.bincount(labels, minlength=n_classes).tolist(),
            "pca_components": int(n_components),
            "pca_components_clipped": bool(clipped),
            "stabilized_logits": int(rel.stabilized),
            "head_sha256": artifact.head_sha256(weight, bias),
            "model_sha256": model_sha256,
            "created_at": artifact.utc_now(),
        }
        return self

    def _centroids(self, projected: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        per_class = self.config.centroids_per_class
        if per_class == 1:
            return F.class_means(projected, labels, n_classes), np.arange(n_classes)
        centres, owners = [], []
        for c in range(n_classes):
            found = F.kmeans(projected[labels == c], per_class, seed=self.config.seed + c)
            centres.append(found)
            owners.extend([c] * len(found))
        return np.concatenate(centres), np.asarray(owners)

    # ----------------------------------------------------------------- scoring
    @property
    def is_fitted(self) -> bool:
        return self._state is not None

    @property
    def feature_dim(self) -> int:
        return int(self._fitted()["weight"].shape[1])

    @property
    def num_classes(self) -> int:
        return int(self._fitted()["weight"].shape[0])

    def fitted_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as read-only float64 views, for engines that compile the math elsewhere.

        weight (C, D), bias (C,), pca_mean (D,), pca_components (P, D), centroids (K, P),
        centroid_labels (K,) int, raw_class_means (C, D+1). λ, k and the config are `lambda_`, `k_`, `config`.
        """
        views = {}
        for name, array in self._fitted().items():
            view = array.view()
            view.flags.writeable = False
            views[name] = view
        return views

    def score_parts(self, features: np.ndarray) -> NeroParts:
        """Score (N, D) features and return every part of the score (see `NeroParts`)."""
        state = self._fitted()
        features = _check_features(features, state["weight"].shape[1], "features")
        cfg = self.config
        rel = F.head_relevance(features, state["weight"], state["bias"], cfg.stabilizer, cfg.epsilon)
        pca = F.PCA(state["pca_mean"], state["pca_components"], np.empty(0))
        projected = F.pca_transform(rel.neurons, pca)
        distance, nearest = F.nearest_centroid(projected, state["centroids"])
        bias_term = self.lambda_ * np.abs(rel.bias)
        rho = F.low_relevance_norm_ratio(features, rel.neurons, self.k_)
        residual = F.residual_ratio(rel.neurons, pca)
        score = F.fuse_score(distance, bias_term, rho, cfg.use_distance, cfg.use_bias, cfg.use_rho,
                             residual if cfg.use_residual else None)
        return NeroParts(
            score=score,
            distance=distance,
            bias_term=bias_term,
            rho=rho,
            residual=residual,
            relevance=rel.neurons,
            bias_relevance=rel.bias,
            nearest_class=state["centroid_labels"][nearest],
            logits=rel.logits,
            probs=rel.probs,
            stabilized=rel.stabilized,
        )

    def score(self, features: np.ndarray) -> np.ndarray:
        """NERO scores of (N, D) features → (N,) float64, higher = more OOD."""
        return self.score_parts(features).score

    def explain(self, features: np.ndarray, top_n: int = 10) -> Explanation:
        """The score's parts plus the top-n neurons deviating from the nearest raw class centroid."""
        parts = self.score_parts(features)
        raw_means = self._fitted()["raw_class_means"]
        raw = np.concatenate([parts.relevance, parts.bias_relevance[:, None]], axis=1)
        _, reference = F.nearest_centroid(raw, raw_means)
        deviation = parts.relevance - raw_means[reference, :-1]
        top, top_deviation = F.top_abs(deviation, min(top_n, deviation.shape[1]))
        return Explanation(parts, reference, top, top_deviation)

    # ------------------------------------------------------------ calibration
    def calibrate(self, features: np.ndarray, target_tpr: float = 0.95) -> Calibration:
        """Set the alert threshold so that `target_tpr` of these ID validation features stay below it."""
        self.calibration = calibrate_threshold(self.score(features), target_tpr)
        return self.calibration

    @property
    def threshold(self) -> float:
        if self.calibration is None:
            raise NotFittedError("the detector has no threshold: call calibrate() on ID validation features")
        return self.calibration.threshold

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(N,) bool: True where the score is above the calibrated threshold (flagged as OOD)."""
        return self.score(features) > self.threshold

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted detector, its calibration and provenance to one artifact file."""
        arrays, metadata = self.to_state()
        artifact.write_artifact(path, arrays, metadata)

    def to_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The fitted arrays and the JSON metadata an artifact stores (also nested inside other detectors'
        artifacts, e.g. a fusion that has NERO as a component: baselines/serving.py)."""
        metadata = {
            "kind": ARTIFACT_KIND,
            "config": self.config.to_dict(),
            "feature_dim": self.feature_dim,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "lambda": self.lambda_,
            "k": self.k_,
            "fit_info": self.fit_info,
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "versions": artifact.library_versions(),
        }
        return dict(self._fitted()), metadata

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], source: Any) -> "NeroDetector":
        """The detector `to_state` described; `ArtifactError` naming `source` when it is not a complete one."""
        if meta.get("kind") != ARTIFACT_KIND:
            raise ArtifactError(f"{source} holds a {meta.get('kind')!r} detector, not a NERO detector")
        missing = [name for name in _ARRAYS if name not in arrays]
        if missing:
            raise ArtifactError(f"{source} is missing NERO array(s): {', '.join(missing)}")
        try:
            det = cls(config=NeroConfig.from_dict(meta["config"]))
        except (InputError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{source}: invalid NERO configuration ({exc})") from exc
        det._state = {name: arrays[name] for name in _ARRAYS}
        det.lambda_, det.k_ = float(meta["lambda"]), int(meta["k"])
        det.class_names = list(meta["class_names"])
        det.fit_info = dict(meta.get("fit_info", {}))
        det.calibration = Calibration.from_dict(meta["calibration"]) if meta.get("calibration") else None
        _check_consistent(source, det, meta)
        return det

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        weight: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        model_sha256: str | None = None,
    ) -> "NeroDetector":
        """Load an artifact; when a head (or model file hash) is given, refuse one fitted for another."""
        arrays, meta = artifact.read_artifact(path)
        det = cls.from_state(arrays, meta, path)
        if weight is not None or bias is not None:
            det.check_head(weight, bias, source=str(path))
        if model_sha256 is not None and det.fit_info.get("model_sha256") not in (None, model_sha256):
            raise ArtifactError(
                f"{path} was fitted on model file sha256 {det.fit_info['model_sha256'][:12]}…, "
                f"but the model given has {model_sha256[:12]}…; re-fit the detector for this model"
            )
        return det

    def check_head(self, weight: np.ndarray | None, bias: np.ndarray | None, source: str = "detector") -> None:
        """Raise `ArtifactError` unless this head is the one the detector was fitted on."""
        if weight is None or bias is None:
            raise InputError("check_head needs both weight and bias")
        weight, bias = np.asarray(weight), np.asarray(bias)
        if weight.ndim != 2 or weight.shape[1] != self.feature_dim:
            raise ArtifactError(
                f"{source} expects features of width D = {self.feature_dim}, "
                f"but the model's head takes D = {weight.shape[-1]}"
            )
        if weight.shape[0] != self.num_classes:
            raise ArtifactError(f"{source} has C = {self.num_classes} classes, the model's head {weight.shape[0]}")
        if artifact.head_sha256(weight, bias) != self.fit_info.get("head_sha256"):
            raise ArtifactError(
                f"{source} was fitted on a different classifier head (head hash mismatch); "
                "re-fit the detector for this model"
            )

    def _fitted(self) -> dict[str, np.ndarray]:
        if self._state is None:
            raise NotFittedError("NeroDetector is not fitted: call fit() or NeroDetector.load()")
        return self._state

    def __repr__(self) -> str:
        fitted = f"D={self.feature_dim}, C={self.num_classes}, k={self.k_}" if self.is_fitted else "unfitted"
        return f"NeroDetector(mode={self.config.mode!r}, {fitted})"


# ------------------------------------------------------------------ validation
def _check_head(weight: Any, bias: Any) -> tuple[np.ndarray, np.ndarray]:
    weight = np.asarray(weight, dtype=np.float64)
    bias = np.asarray(bias, dtype=np.float64)
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise InputError(f"head weight must be (C, D) and bias (C,), got {weight.shape} and {bias.shape}")
    if weight.shape[0] < 2:
        raise InputError(f"NERO needs a head with at least 2 classes, got C = {weight.shape[0]}")
    if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
        raise InputError("head weight or bias contains NaN or inf")
    return weight, bias


def _check_features(features: Any, n_features: int, what: str) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise InputError(f"{what} must be a 2-D (N, D) array, got shape {features.shape}")
    if features.shape[0] == 0:
        raise InputError(f"{what} are empty (N = 0)")
    if features.shape[1] != n_features:
        raise InputError(f"{what} have width D = {features.shape[1]}, the head expects D = {n_features}")
    bad = ~np.isfinite(features).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InputError(f"{what} contain NaN or inf in {len(rows)} row(s), first at row {rows[0]}")
    return features


def _check_labels(labels: Any, n_samples: int, n_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n_samples,):
        raise InputError(f"labels must have shape ({n_samples},), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be integer class ids, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise InputError(f"labels must be in [0, {n_classes}), got range [{labels.min()}, {labels.max()}]")
    empty = np.flatnonzero(np.bincount(labels, minlength=n_classes) == 0)
    if len(empty):
        raise InputError(f"class(es) {empty.tolist()} have no training samples; every class needs a centroid")
    return labels.astype(np.int64)


def _check_consistent(path: Any, det: NeroDetector, meta: dict[str, Any]) -> None:
    state = det._fitted()
    n_classes, n_features = state["weight"].shape
    expected = {
        "bias": (n_classes,),
        "pca_mean": (n_features,),
        "raw_class_means": (n_classes, n_features + 1),
    }
    problems = [f"{k} has shape {state[k].shape}, expected {v}" for k, v in expected.items() if state[k].shape != v]
    if meta.get("feature_dim") != n_features or meta.get("num_classes") != n_classes:
        problems.append(f"metadata says D={meta.get('feature_dim')}, C={meta.get('num_classes')}")
    if state["pca_components"].shape[1:] != (n_features,) or state["centroids"].shape[1:] != state["pca_components"].shape[:1]:
        problems.append("PCA components and centroids disagree in width")
    if len(det.class_names) != n_classes or not 1 <= det.k_ <= n_features:
        problems.append("class names or k do not fit the head")
    if problems:
        raise ArtifactError(f"{path} is inconsistent: {'; '.join(problems)}")
