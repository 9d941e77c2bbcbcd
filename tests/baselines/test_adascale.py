"""AdaSCALE-A/-L against a restatement of OpenOOD's postprocessor (torch topk / gather, an explicit ECDF
count, the per-sample SCALE factor), on synthetic post-activation features.

No independent package implements AdaSCALE: pytorch-ood 0.4.0 has none, and OpenOOD's code calls
`.cuda()` and statsmodels. The restatement below is written from OpenOOD's code, sample by sample.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stream_monitor.baselines.adascale import AdaSCALE, adascale_factor, adascale_features, adascale_perturb
from stream_monitor.errors import InputError

D, C = 60, 3


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    val = np.abs(rng.normal(0, 1, (40, D)))
    test = np.abs(rng.normal(0, 1.5, (12, D)))
    return {"val": val, "val_p": val + rng.normal(0, 0.2, val.shape), "test": test,
            "test_p": test + rng.normal(0, 0.4, test.shape), "w": rng.normal(0, 0.3, (C, D)), "b": rng.normal(0, 0.1, C)}


def _reference(d, variant: str, p=(75.0, 85.0), k1=5.0, k2=1.0, lmbda=10.0) -> np.ndarray:
    """OpenOOD's AdaScalePostprocessor + AdaScaleANet.forward_threshold, one sample at a time."""
    k1_, k2_ = int(D * k1 / 100), int(D * k2 / 100)

    def q(a, a2):
        a, a2 = torch.from_numpy(a), torch.from_numpy(a2)
        c = torch.relu(a2)[torch.topk(a, k1_).indices].sum()
        s = (a - a2).abs()[torch.topk(a, k2_).indices].sum()
        return float(c + lmbda * s)

    reference = [q(a, a2) for a, a2 in zip(d["val"], d["val_p"])]
    scores = []
    for a, a2 in zip(d["test"], d["test_p"]):
        ecdf = sum(r <= q(a, a2) for r in reference) / len(reference)
        percentile = p[0] + (1 - ecdf) * (p[1] - p[0])
        x = torch.relu(torch.from_numpy(a))
        k = D - int(torch.round(torch.tensor(D * percentile / 100.0, dtype=torch.float64)))  # float64, as from numpy
        r = float(x.sum() / torch.topk(x, k).values.sum())
        if variant == "A":
            logits = d["w"] @ (a * np.exp(r)) + d["b"]
        else:
            logits = (d["w"] @ a + d["b"]) * r**2
        scores.append(-np.log(np.exp(logits - logits.max()).sum()) - logits.max())
    return np.array(scores)


@pytest.mark.parametrize("variant", ["A", "L"])
def test_adascale_matches_openood_restatement(data, variant: str) -> None:
    det = AdaSCALE().fit(data["val"], data["val_p"], data["w"], data["b"])
    np.testing.assert_allclose(det.score(data["test"], data["test_p"], variant), _reference(data, variant), rtol=1e-9)


def test_unperturbed_frames_get_the_highest_percentile(data) -> None:
    """Q' below every reference value -> ECDF 0 -> percentile p_max (the least aggressive scaling)."""
    det = AdaSCALE(lmbda=0.0).fit(data["val"], data["val_p"], data["w"], data["b"])
    from stream_monitor.baselines.adascale import adascale_percentiles, adascale_statistic
    zero = np.zeros_like(data["test"])
    q = adascale_statistic(data["test"], zero, det.k1_, det.k2_, det.lmbda)
    np.testing.assert_array_equal(adascale_percentiles(q, det.reference_, 75.0, 85.0), 85.0)


def test_factor_is_one_for_an_all_zero_row() -> None:
    np.testing.assert_array_equal(adascale_factor(np.zeros((2, 5)), np.array([80.0, 90.0])), 1.0)


def test_perturbation_moves_exactly_the_smallest_gradient_values() -> None:
    images = torch.zeros(2, 1, 4, 5)
    grad = torch.arange(40, dtype=torch.float32).reshape(2, 1, 4, 5) - 3.5  # |grad| smallest around 3.5
    out = adascale_perturb(images, grad, fraction=0.1, step=0.5)  # 2 of 20 values per image
    moved = (out != 0).reshape(2, -1)
    assert moved.sum(dim=1).tolist() == [2, 0 + 2]
    assert torch.equal(out.reshape(2, -1)[0, [3, 4]], torch.tensor([-0.5, 0.5]))


def test_features_follow_the_top_logit_gradient() -> None:
    """With a linear 'backbone' the input gradient of the top logit is that class's weight row."""

    class Linear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Linear(12, 6, bias=False)
            self.head = torch.nn.Linear(6, 3)

        def forward(self, x):
            f = self.body(x.flatten(1))
            return self.head(f), f

    torch.manual_seed(0)
    model = Linear().double().eval()
    images = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    feats, perturbed = adascale_features(model, images, fraction=0.25, step=0.5)
    with torch.no_grad():
        logits, f = model(images)
        grad = (model.head.weight[logits.argmax(1)] @ model.body.weight).reshape(images.shape)
        expected = model(adascale_perturb(images, grad, 0.25, 0.5))[1]
    np.testing.assert_allclose(feats, f.numpy(), rtol=1e-12)
    np.testing.assert_allclose(perturbed, expected.numpy(), rtol=1e-12)


def test_bad_settings_are_input_errors(data) -> None:
    with pytest.raises(InputError, match="percentiles"):
        AdaSCALE(percentiles=(90.0, 80.0))
    with pytest.raises(InputError, match="variant"):
        AdaSCALE().fit(data["val"], data["val_p"], data["w"], data["b"]).score(data["test"], data["test_p"], "B")
    with pytest.raises(InputError, match="equal"):
        AdaSCALE().fit(data["val"], data["val_p"][:3], data["w"], data["b"])
