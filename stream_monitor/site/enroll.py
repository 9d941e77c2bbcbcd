"""Site enrollment: adapt a fitted NERO detector to one hospital's normal footage without labels.

The naive way (refit on the site's frames, threshold on the site's frames) makes the site's normal
footage look in-distribution — and polyps from there with it (issue 8: CVC polyps flagged 69 % → 3.5 %).
The procedures here change the detector as little as possible and never forget the original fit:

- `threshold`: keep the detector, move the threshold to the site's held-back normal footage. The ROC
  curve does not change; only the operating point slides along it.
- `extend` (union): keep the original PCA subspace and class centroids, and ADD the site's own
  relevance directions (the top principal directions of site relevance outside the original subspace)
  and site centroids (k-means on site frames, each owned by its frames' majority predicted class).
  The ID centroids' coordinates on the new directions come from the artifact's raw class means, so no
  training data is needed at the site.
- `recenter`: shift the relevance centre by α·(site mean − ID mean): a site whose normal footage is
  offset from the training site as a whole gets that offset removed, frame-to-frame differences stay.

All of them set the threshold on frames held back from the fit (`calibrate_on`). Which one to trust is
measured, not assumed: see docs/results/domain-shift/ (evaluation in stream_monitor.evaluation.domain_shift).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..nero import NeroDetector
from ..nero import functional as F

__all__ = ["PROCEDURES", "EnrollOptions", "enroll_detector", "holdout_mask"]

PROCEDURES = ("threshold", "extend", "recenter")


@dataclass(frozen=True)
class EnrollOptions:
    """procedure (one of PROCEDURES; the default is the one `stream-monitor enroll` uses, see its --help
    for how it was chosen); extend: site directions and centroids added; recenter: α."""

    procedure: str = "threshold"
    site_components: int = 10
    site_clusters: int = 4
    alpha: float = 1.0
    target_tpr: float = 0.95
    seed: int = 0


def holdout_mask(n_frames: int, holdout: float = 0.3, block: int = 30) -> np.ndarray:
    """(n,) bool: True for frames held back to set the threshold.

    Footage is cut into contiguous blocks of `block` frames, and whole blocks are held back, spread
    evenly over the recording: near-identical neighbouring frames then never sit on both sides, and the
    held-back part covers the whole procedure, not just its end.
    """
    if not 0 < holdout < 1:
        raise InputError(f"holdout must be in (0, 1), got {holdout}")
    n_blocks = max(1, -(-n_frames // block))
    chosen = np.zeros(n_blocks, bool)
    n_hold = max(1, round(holdout * n_blocks)) if n_blocks > 1 else 0
    if n_hold:
        chosen[np.unique(np.linspace(0, n_blocks - 1, n_hold + 2)[1:-1].round().astype(int))] = True
    mask = np.repeat(chosen, block)[:n_frames]
    if not mask.any() or mask.all():  # too little footage for blocks: hold back the last share of frames
        mask = np.zeros(n_frames, bool)
        mask[n_frames - max(1, round(holdout * n_frames)):] = True
    return mask


def enroll_detector(det: NeroDetector, fit_features: np.ndarray, calibration_features: np.ndarray,
                    options: EnrollOptions = EnrollOptions()) -> NeroDetector:
    """A new detector adapted to the site: fitted on `fit_features`, threshold on `calibration_features`
    (site normal frames held back from the fit). The input detector is not modified."""
    if options.procedure not in PROCEDURES:
        raise InputError(f"unknown enrollment procedure {options.procedure!r}; known: {', '.join(PROCEDURES)}")
    if len(calibration_features) < 20:
        raise InputError(f"only {len(calibration_features)} held-back frames: need at least 20 to set a "
                         "threshold at 95 % (more is better; aim for minutes of footage)")
    site = copy.deepcopy(det)
    if options.procedure == "extend":
        _extend(site, fit_features, options)
    elif options.procedure == "recenter":
        _recenter(site, fit_features, options.alpha)
    site.calibrate(calibration_features, options.target_tpr)
    site.fit_info = {**det.fit_info, "enrollment": {
        "procedure": options.procedure, "site_frames_fit": int(len(fit_features)),
        "site_frames_calibration": int(len(calibration_features)),
        "site_components": options.site_components if options.procedure == "extend" else 0,
        "site_clusters": options.site_clusters if options.procedure == "extend" else 0,
        "alpha": options.alpha if options.procedure == "recenter" else None,
        "original_threshold": det.calibration.threshold if det.calibration else None}}
    return site


def _site_relevance(det: NeroDetector, features: np.ndarray) -> F.Relevance:
    state, cfg = det.fitted_arrays(), det.config
    return F.head_relevance(np.asarray(features, np.float64), state["weight"], state["bias"], cfg.stabilizer,
                            cfg.epsilon)


def _extend(det: NeroDetector, features: np.ndarray, options: EnrollOptions) -> None:
    state = {k: np.array(v) for k, v in det.fitted_arrays().items()}
    rel = _site_relevance(det, features)
    mean, components = state["pca_mean"], state["pca_components"]
    centred = rel.neurons - mean
    outside = centred - (centred @ components.T) @ components
    room = min(options.site_components, len(features) - 1, components.shape[1] - components.shape[0])
    if room > 0:
        _, _, vt = np.linalg.svd(outside - outside.mean(0), full_matrices=False)
        new = vt[:room]
        new -= (new @ components.T) @ components  # exactly orthogonal to the original subspace
        new /= np.linalg.norm(new, axis=1, keepdims=True)
        # ID centroids on the new directions: projections of the raw class means (a mean's projection is
        # the mean of the projections), so no training frame is needed at the site.
        id_coords = (state["raw_class_means"][:, :-1] - mean) @ new.T
        owners = state["centroid_labels"]
        state["centroids"] = np.concatenate([state["centroids"], id_coords[owners]], axis=1)
        state["pca_components"] = np.concatenate([components, new], axis=0)
    projected = (rel.neurons - mean) @ state["pca_components"].T
    predicted = rel.probs.argmax(1)
    n_clusters = min(options.site_clusters, len(features))
    if n_clusters > 0:
        centres = F.kmeans(projected, n_clusters, seed=options.seed)
        nearest = F.l1_distances(projected, centres).argmin(1)
        owners = [np.bincount(predicted[nearest == j], minlength=det.num_classes).argmax() if (nearest == j).any()
                  else 0 for j in range(len(centres))]
        state["centroids"] = np.concatenate([state["centroids"], centres])
        state["centroid_labels"] = np.concatenate([state["centroid_labels"], np.asarray(owners)])
    det._state = state


def _recenter(det: NeroDetector, features: np.ndarray, alpha: float) -> None:
    state = {k: np.array(v) for k, v in det.fitted_arrays().items()}
    rel = _site_relevance(det, features)
    counts = np.asarray(det.fit_info.get("train_class_counts") or np.ones(det.num_classes), np.float64)
    id_mean = (counts[:, None] * state["raw_class_means"][:, :-1]).sum(0) / counts.sum()
    state["pca_mean"] = state["pca_mean"] + alpha * (rel.neurons.mean(0) - id_mean)
    det._state = state
