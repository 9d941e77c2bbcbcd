"""Parity: NeroDetector(mode="parity") against an independent restatement of docs/NERO.md.

The acceptance bar is a maximum relative difference ≤ 1e-9 in float64, on random features with
C = 3 and 11, D = 384, 512 and 1280, including test samples with a logit in ±[1e-3, 1e-2] (where ε = 0
relevance is ill-conditioned and a sloppy implementation drifts first). Closer to zero the problem
itself is ill-conditioned: the logit's own rounding error (~1e-16 · Σ|W a|) divided by |f| exceeds 1e-9
near |f| ~ 1e-6, whatever the implementation, so the bar could only be met by copying the reference's
summation order.
"""

import numpy as np
import pytest

from stream_monitor.nero import NeroDetector

from .conftest import make_problem
from .reference_nero import fit_reference, score_reference

PARITY_RTOL = 1e-9


def near_zero_logit_samples(features, weight, bias, rng, n=10):
    """Samples moved along the head's class-1 row until |class-1 logit| is in [1e-3, 1e-2]."""
    samples = features[:n].copy()
    direction = weight[1] / (weight[1] @ weight[1])
    logit = samples @ weight[1] + bias[1]
    target = rng.choice([-1.0, 1.0], size=n) * rng.uniform(1e-3, 1e-2, size=n)
    return samples + (target - logit)[:, None] * direction[None, :]


@pytest.mark.parametrize("n_classes", [3, 11])
@pytest.mark.parametrize("n_features", [384, 512, 1280])
def test_parity_scores_match_reference(n_classes, n_features):
    n_train = 2 * n_features  # enough samples that floor(2D/3) components are not clipped
    features, labels, weight, bias, rng = make_problem(n_classes, n_features, n_train, seed=n_features + n_classes)
    test, _, _, _, _ = make_problem(n_classes, n_features, 60, seed=7)
    test = np.concatenate([test, near_zero_logit_samples(test, weight, bias, rng)])

    det = NeroDetector(mode="parity").fit(features, labels, weight, bias)
    reference = fit_reference(features, labels, weight, bias)
    ours, theirs = det.score(test), score_reference(test, reference)

    assert det.fit_info["pca_components_clipped"] is False
    assert det.lambda_ == pytest.approx(reference["lam"], rel=PARITY_RTOL)
    relative = np.abs(ours - theirs) / np.abs(theirs)
    assert relative.max() <= PARITY_RTOL, f"max relative difference {relative.max():.2e}"
