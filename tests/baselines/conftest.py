"""Shared toy problems for the baseline detector tests, and real features of the bundled model (`real`)."""

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


@pytest.fixture(scope="session")
def real(shared_data) -> dict[str, np.ndarray]:
    """Bundled-model features: 30 ID train images (10 per class), 8 ID test, 8 HyperKvasir polyps; "*_ext"
    the same rows as `[feature | block statistics]` for block-statistics detectors."""
    import torch

    from stream_monitor import bundled
    from stream_monitor.data.images import list_images, read_image
    from stream_monitor.data.split import load_split
    from stream_monitor.evaluation.datasets import DEFAULT_SPLIT
    from stream_monitor.models.block_stats import forward_with_stats
    from stream_monitor.models.registry import load_classifier
    from stream_monitor.preprocess import preprocess_batch

    model, _ = load_classifier(bundled.MODEL)
    split = load_split(DEFAULT_SPLIT)
    labels = np.asarray(split.labels("train"))
    train_idx = np.concatenate([np.flatnonzero(labels == c)[:10] for c in range(3)])
    train_paths = [split.paths("train")[i] for i in train_idx]
    ood_paths = list_images(shared_data / "hyperkvasir-lgi" / "polyp")[:8]
    torch.set_num_threads(1)

    def extended(paths) -> np.ndarray:
        """`[feature | block statistics]` (models/block_stats.py) from one pass of the real model."""
        with torch.inference_mode():
            features, _, stats = forward_with_stats(model, torch.from_numpy(preprocess_batch([read_image(p) for p in paths])))
        return torch.cat([features, stats], dim=1).double().numpy()

    weight, bias = model.head_arrays()
    d = model.feature_dim
    train_ext = extended(train_paths)
    test_ext = np.vstack([extended(split.paths("test")[:8]), extended(ood_paths)])
    return {"train": train_ext[:, :d], "labels": labels[train_idx], "weight": np.asarray(weight, np.float64),
            "bias": np.asarray(bias, np.float64), "test": test_ext[:, :d], "train_ext": train_ext, "test_ext": test_ext}
