"""Fit every method on ID training features, score ID and OOD sets, compute metrics, pick the default.

Nothing OOD is used to fit anything. The default NERO configuration is chosen on a *validation* OOD
set (a fixed share of the HyperKvasir OOD images, kept apart from the test OOD images) together with
the ID validation images; test OOD images never influence a choice.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .methods import Method
from .ood_metrics import OODMetrics, evaluate

SELECTION_RULE = (
    "highest AUROC of ID validation vs the pooled validation OOD images (a fixed 30% of each HyperKvasir "
    "OOD class, disjoint from the test OOD images); ties broken by the lower FPR95 (paper convention)"
)


@dataclass(frozen=True)
class BenchmarkData:
    """Feature arrays of one model. features (N, D) float, labels (N,) int, head weight (C, D), bias (C,).

    `extended`, where the model gives block statistics, holds the same sets as `[feature | statistics]`
    (N, D + S) under the keys "train", "val", "id_test", "ood_test:NAME", "ood_val:NAME"."""

    train_features: np.ndarray
    train_labels: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    val_features: np.ndarray
    id_test_features: np.ndarray
    ood_test: dict[str, np.ndarray]
    ood_val: dict[str, np.ndarray] = field(default_factory=dict)
    extended: dict[str, np.ndarray] | None = None

    def for_method(self, method: Method) -> "BenchmarkData":
        """The arrays `method` reads: these, or the extended ones for block-statistics detectors."""
        if not method.block_stats:
            return self
        if self.extended is None:
            raise ValueError(f"{method.name} needs block statistics, which this model does not give")
        ext = self.extended
        return BenchmarkData(ext["train"], self.train_labels, self.weight, self.bias, ext["val"], ext["id_test"],
                             {n: ext[f"ood_test:{n}"] for n in self.ood_test},
                             {n: ext[f"ood_val:{n}"] for n in self.ood_val})


@dataclass
class MethodResult:
    """One method's scores and metrics. `test[ood_set]` and `validation` are OODMetrics."""

    name: str
    family: str
    options: dict[str, Any]
    test: dict[str, OODMetrics]
    validation: OODMetrics | None
    id_test_scores: np.ndarray
    ood_test_scores: dict[str, np.ndarray]
    seconds: float
    note: str = ""


def run_method(method: Method, data: BenchmarkData) -> MethodResult:
    """Fit on ID train, score everything; warnings raised while fitting become the result's note."""
    start = time.perf_counter()
    data = data.for_method(method)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector = method.build().fit(data.train_features, data.train_labels, data.weight, data.bias)
    id_scores = detector.score(data.id_test_features)
    ood_scores = {name: detector.score(feats) for name, feats in data.ood_test.items()}
    validation = None
    if data.ood_val:
        pooled = np.concatenate([detector.score(f) for f in data.ood_val.values()])
        validation = evaluate(detector.score(data.val_features), pooled)
    return MethodResult(
        name=method.name,
        family=method.family,
        options=method.options,
        test={name: evaluate(id_scores, scores) for name, scores in ood_scores.items()},
        validation=validation,
        id_test_scores=id_scores,
        ood_test_scores=ood_scores,
        seconds=time.perf_counter() - start,
        note="; ".join(sorted({str(w.message) for w in caught})),
    )


def run_methods(methods: list[Method], data: BenchmarkData, description: str = "methods") -> list[MethodResult]:
    """Every method that can run on `data` (block-statistics detectors only where the model gives them)."""
    runnable = [m for m in methods if not m.block_stats or data.extended is not None]
    return [run_method(m, data) for m in tqdm(runnable, desc=description, leave=False)]


def result_from_scores(name: str, family: str, id_scores: np.ndarray, ood_scores: dict[str, np.ndarray],
                       seconds: float, note: str = "") -> MethodResult:
    """Wrap scores computed outside the fit/score contract (ODIN, which needs the images)."""
    test = {n: evaluate(id_scores, s) for n, s in ood_scores.items()}
    return MethodResult(name, family, {}, test, None, id_scores, ood_scores, seconds, note)


def select_default(candidates: list[MethodResult]) -> MethodResult:
    """Apply SELECTION_RULE; every candidate must carry validation metrics."""
    if not candidates or any(c.validation is None for c in candidates):
        raise ValueError("selection needs candidates scored on a validation OOD set")
    return max(candidates, key=lambda c: (round(c.validation.auroc, 12), -c.validation.fpr95))
