"""Parity on real features: the bundled EfficientNet-Lite0's penultimate features of real HyperKvasir
images (D = 1280, C = 3), against the independent restatement of docs/NERO.md.

With 150 training images floor(2D/3) = 853 PCA components exceed the train rank, so both sides use
149 (NeroDetector clips to N − 1 and says so; the restatement is told the same number)."""

import warnings

import numpy as np
import pytest
import torch

from stream_monitor import bundled
from stream_monitor.data.features import extract_paths
from stream_monitor.data.split import load_split
from stream_monitor.evaluation.datasets import DEFAULT_SPLIT
from stream_monitor.models.registry import load_classifier
from stream_monitor.nero import NeroDetector

from .reference_nero import fit_reference, score_reference

PARITY_RTOL = 1e-9


@pytest.fixture(scope="module")
def real_features():
    split = load_split(DEFAULT_SPLIT)
    torch.manual_seed(0)
    model, _ = load_classifier(bundled.MODEL)
    train_idx = np.random.default_rng(0).permutation(len(split.paths("train")))[:150]
    train_paths = [split.paths("train")[i] for i in sorted(train_idx)]
    train = extract_paths(model, train_paths, "train", progress=False)
    test_paths = split.paths("test")[:20] + split.paths("ood")[:20]
    test = extract_paths(model, test_paths, "test", progress=False)
    labels = split.labels("train")[sorted(train_idx)]
    weight, bias = model.head_arrays()
    return train.features.astype(np.float64), labels, test.features.astype(np.float64), weight, bias


def test_parity_on_real_features(real_features):
    train, labels, test, weight, bias = real_features
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the clip warning is expected and tested elsewhere
        det = NeroDetector(mode="parity").fit(train, labels, weight, bias)
    assert det.fit_info["pca_components"] == 149
    reference = fit_reference(train, labels, weight, bias, n_components=149)
    ours, theirs = det.score(test), score_reference(test, reference)
    relative = np.abs(ours - theirs) / np.abs(theirs)
    assert relative.max() <= PARITY_RTOL, f"max relative difference {relative.max():.2e}"
