"""AdaSCALE-A and -L in an evaluation: they need a gradient and a second forward pass per image, so,
like ODIN, they run on the images rather than on cached features. The reference distribution of the
perturbation statistic is fitted on the ID validation images (as OpenOOD does), never on OOD data.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import torch

from ..baselines.adascale import AdaSCALE, adascale_features
from ..preprocess import preprocess_batch
from .benchmark import MethodResult, result_from_scores
from .datasets import Source
from .ood_metrics import evaluate


def _pairs(model: torch.nn.Module, source: Source, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    feats, perturbed = [], []
    frames = source.frames()
    while batch := list(itertools.islice(frames, batch_size)):
        a, a2 = adascale_features(model, torch.from_numpy(preprocess_batch([image for _, image in batch])))
        feats.append(a), perturbed.append(a2)
    return np.concatenate(feats), np.concatenate(perturbed)


def adascale_results(inputs, batch_size: int = 32) -> list[MethodResult]:
    """AdaSCALE-A and AdaSCALE-L on ID test and every OOD set of `inputs` (an EvaluationInputs), with
    validation metrics (ID validation vs the pooled validation OOD images) when the inputs have them."""
    start = time.perf_counter()
    model, split = inputs.model.eval(), inputs.split
    weight, bias = model.head_arrays()
    val = _pairs(model, Source("ID val", "files", files=tuple(split.paths("val"))), batch_size)
    detector = AdaSCALE().fit(*val, weight, bias)
    id_source = inputs.id_test or Source("ID test", "files", files=tuple(split.paths("test")))
    id_pairs = _pairs(model, id_source, batch_size)
    ood_pairs = {s.name: _pairs(model, s, batch_size) for s in inputs.ood_sources}
    ood_val = [_pairs(model, Source(n, "files", files=tuple(p)), batch_size) for n, p in inputs.ood_validation.items()]
    results = []
    for variant in ("A", "L"):
        id_scores = detector.score(*id_pairs, variant)
        result = result_from_scores(f"adascale_{variant.lower()}", "baseline", id_scores,
                                    {n: detector.score(*p, variant) for n, p in ood_pairs.items()},
                                    time.perf_counter() - start,
                                    "OpenOOD defaults: percentiles 75-85, k1 5 %, k2 1 %, λ 10, o 5 %; "
                                    "Q' reference on ID validation")
        if ood_val:
            pooled = np.concatenate([detector.score(*p, variant) for p in ood_val])
            result.validation = evaluate(detector.score(*val, variant), pooled)
        results.append(result)
    return results
