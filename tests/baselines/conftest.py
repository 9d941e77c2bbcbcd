"""Shared toy problems for the baseline detector tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

N_CLASSES = 3
WIDTH = 24  # 3 class blocks of 4 units, then 12 units that ID data barely uses
BLOCK = 4


@dataclass(frozen=True)
class ToyProblem:
    """ID: three separable post-ReLU-like clusters with a head that classifies them; OOD: elsewhere."""

    train_features: np.ndarray  # (N, D) float64, non-negative
    train_labels: np.ndarray  # (N,) int64
    weight: np.ndarray  # (C, D)
    bias: np.ndarray  # (C,)
    id_features: np.ndarray  # (M, D) held-out ID
    ood_features: np.ndarray  # (M, D)


def _toy_features(rng: np.random.Generator, labels: np.ndarray | None, n: int) -> np.ndarray:
    # |noise| keeps features non-negative, as after a ReLU + average pool.
    x = np.abs(rng.normal(0.0, 0.3, (n, WIDTH)))
    if labels is None:
        # OOD activates the units that no class uses, with random strengths.
        x[:, N_CLASSES * BLOCK :] += 3.0 * rng.random((n, WIDTH - N_CLASSES * BLOCK))
        return x
    for c in range(N_CLASSES):
        x[labels == c, BLOCK * c : BLOCK * (c + 1)] += 3.0
    return x


def make_toy_problem(seed: int = 0, n_train: int = 600, n_test: int = 300) -> ToyProblem:
    """The toy problem for `seed`; the head reads each class's block (plus a little noise)."""
    rng = np.random.default_rng(seed)
    train_labels = rng.integers(0, N_CLASSES, n_train)
    weight = np.zeros((N_CLASSES, WIDTH))
    for c in range(N_CLASSES):
        weight[c, BLOCK * c : BLOCK * (c + 1)] = 1.0
    weight += rng.normal(0.0, 0.05, weight.shape)
    return ToyProblem(
        train_features=_toy_features(rng, train_labels, n_train),
        train_labels=train_labels,
        weight=weight,
        bias=rng.normal(0.0, 0.1, N_CLASSES),
        id_features=_toy_features(rng, rng.integers(0, N_CLASSES, n_test), n_test),
        ood_features=_toy_features(rng, None, n_test),
    )


@pytest.fixture(scope="session")
def toy() -> ToyProblem:
    return make_toy_problem()


@pytest.fixture(scope="session")
def auroc_ood_positive() -> Callable[[np.ndarray, np.ndarray], float]:
    """AUROC with OOD as the positive class, from ID scores and OOD scores (higher = more OOD)."""

    def auroc(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
        y = np.r_[np.zeros(len(id_scores)), np.ones(len(ood_scores))]
        return float(roc_auc_score(y, np.r_[id_scores, ood_scores]))

    return auroc
