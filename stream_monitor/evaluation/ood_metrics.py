"""OOD detection metrics. Scores are oriented higher = more OOD everywhere; the positive class of each
metric is in its name.

Two FPR-at-95%-TPR conventions exist and give different numbers, so both are here, named:
- `fpr_at_tpr_id_accepted` — the NERO paper's code (docs/NERO.md §7): ID is the accepted class,
  τ = sorted(s_ID)[floor(0.95·n_ID)], FPR = share of OOD scoring ≤ τ (ties count as false positives).
- `fpr_at_tpr_ood_positive` — OpenOOD / pytorch-ood: OOD is the positive class; FPR = share of ID
  flagged at the first ROC point whose OOD recall reaches 95%.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError


def _check(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    id_scores = np.asarray(id_scores, dtype=np.float64).ravel()
    ood_scores = np.asarray(ood_scores, dtype=np.float64).ravel()
    if len(id_scores) == 0 or len(ood_scores) == 0:
        raise InputError(f"metrics need ID and OOD scores, got {len(id_scores)} ID and {len(ood_scores)} OOD")
    if not (np.isfinite(id_scores).all() and np.isfinite(ood_scores).all()):
        raise InputError("scores contain NaN or inf")
    return id_scores, ood_scores


def _roc_points(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC with OOD positive, one point per distinct threshold, descending: (fpr, tpr, thresholds)."""
    scores = np.concatenate([ood_scores, id_scores])
    is_ood = np.concatenate([np.ones(len(ood_scores)), np.zeros(len(id_scores))])
    order = np.argsort(-scores, kind="mergesort")
    scores, is_ood = scores[order], is_ood[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_pos = np.cumsum(is_ood)[last_of_value]
    false_pos = (last_of_value + 1) - true_pos
    tpr = np.r_[0.0, true_pos / len(ood_scores)]
    fpr = np.r_[0.0, false_pos / len(id_scores)]
    return fpr, tpr, np.r_[np.inf, scores[last_of_value]]


def auroc(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Area under the ROC curve, OOD positive; ties count half (Mann–Whitney U / (n_ID · n_OOD))."""
    id_scores, ood_scores = _check(id_scores, ood_scores)
    ranks = _average_ranks(np.concatenate([id_scores, ood_scores]))
    ood_rank_sum = ranks[len(id_scores):].sum()
    n_ood, n_id = len(ood_scores), len(id_scores)
    return float((ood_rank_sum - n_ood * (n_ood + 1) / 2) / (n_ood * n_id))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1]
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # 1-based mean rank of each tie group
    return ranks


def fpr_at_tpr_id_accepted(id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95) -> float:
    """The NERO paper's FPR95: τ = sorted(s_ID)[floor(tpr·n_ID)]; share of OOD with score ≤ τ."""
    id_scores, ood_scores = _check(id_scores, ood_scores)
    index = min(math.floor(tpr * len(id_scores)), len(id_scores) - 1)
    threshold = np.sort(id_scores)[index]
    return float(np.mean(ood_scores <= threshold))


def fpr_at_tpr_ood_positive(id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95) -> float:
    """OpenOOD's FPR95: OOD positive; share of ID flagged at the first ROC point with OOD recall ≥ tpr."""
    fpr, recall, _ = _roc_points(*_check(id_scores, ood_scores))
    return float(fpr[np.argmax(recall >= tpr - 1e-12)])


def average_precision(positive: np.ndarray, negative: np.ndarray) -> float:
    """Average precision (step-wise, as scikit-learn's) with `positive` scores as the positive class."""
    fpr, tpr, _ = _roc_points(negative, positive)
    true_pos = tpr * len(positive)
    flagged = true_pos + fpr * len(negative)
    precision = np.divide(true_pos, flagged, out=np.ones_like(true_pos), where=flagged > 0)
    return float(np.sum(np.diff(tpr) * precision[1:]))


def aupr_out(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Area under precision–recall with OOD positive (score as given)."""
    id_scores, ood_scores = _check(id_scores, ood_scores)
    return average_precision(ood_scores, id_scores)


def aupr_in(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Area under precision–recall with ID positive (score negated)."""
    id_scores, ood_scores = _check(id_scores, ood_scores)
    return average_precision(-id_scores, -ood_scores)


def detection_error(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """min over thresholds of ½(1 − TPR) + ½·FPR, OOD positive (Liang et al. 2018)."""
    fpr, tpr, _ = _roc_points(*_check(id_scores, ood_scores))
    return float(np.min(0.5 * (1 - tpr) + 0.5 * fpr))


@dataclass(frozen=True)
class OODMetrics:
    """All metrics for one (method, OOD set) pair. Fractions in [0, 1]."""

    auroc: float
    fpr95: float
    fpr95_ood_positive: float
    aupr_in: float
    aupr_out: float
    detection_error: float
    n_id: int
    n_ood: int

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate(id_scores: np.ndarray, ood_scores: np.ndarray) -> OODMetrics:
    """Every metric at once; `fpr95` is the NERO paper's convention (ID accepted)."""
    id_scores, ood_scores = _check(id_scores, ood_scores)
    return OODMetrics(
        auroc=auroc(id_scores, ood_scores),
        fpr95=fpr_at_tpr_id_accepted(id_scores, ood_scores),
        fpr95_ood_positive=fpr_at_tpr_ood_positive(id_scores, ood_scores),
        aupr_in=aupr_in(id_scores, ood_scores),
        aupr_out=aupr_out(id_scores, ood_scores),
        detection_error=detection_error(id_scores, ood_scores),
        n_id=len(id_scores),
        n_ood=len(ood_scores),
    )
