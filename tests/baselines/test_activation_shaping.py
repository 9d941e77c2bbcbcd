"""ReAct, ASH-S and SCALE against restatements: a sort-based percentile and the papers' torch code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stream_monitor.baselines import ASH, SCALE, ReAct, ash_s, react_threshold, scale_shape
from stream_monitor.baselines.activation_shaping import kept_count
from stream_monitor.errors import InputError

RTOL = 1e-9


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    """Post-ReLU-like features (about 40% exact zeros, so ties at the cut happen), C=5, D=30."""
    rng = np.random.default_rng(11)
    relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
    return {"train": relu(rng.normal(0.3, 1.0, (80, 30))), "labels": np.arange(80) % 5,
            "weight": rng.normal(0.0, 0.3, (5, 30)), "bias": rng.normal(size=5),
            "test": relu(rng.normal(0.3, 1.5, (12, 30)))}  # fmt: skip


def energy_ref(logits_row: np.ndarray) -> float:
    return -math.log(sum(math.exp(v) for v in logits_row))


def percentile_by_sort(values: np.ndarray, q: float) -> float:
    """Linear-interpolation percentile written out: position q/100 * (n - 1) in the sorted values."""
    v = np.sort(values.ravel())
    pos = q / 100.0 * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))


def ash_s_torch(x: torch.Tensor, percentile: float) -> torch.Tensor:
    """ASH-S as in Djurisic et al.'s code, on (B, C, 1, 1) activations."""
    b, c, h, w = x.shape
    s1 = x.sum(dim=[1, 2, 3])
    n = x.shape[1:].numel()
    k = n - int(np.round(n * percentile / 100.0))
    t = x.view((b, c * h * w))
    v, i = torch.topk(t, k, dim=1)
    t.zero_().scatter_(dim=1, index=i, src=v)
    s2 = x.sum(dim=[1, 2, 3])
    return x * torch.exp(s1 / s2)[:, None, None, None]


def scale_torch(x: torch.Tensor, percentile: float) -> torch.Tensor:
    """SCALE as in Xu et al.'s code, on (B, C, 1, 1) activations."""
    original = x.clone()
    b, c, h, w = x.shape
    s1 = x.sum(dim=[1, 2, 3])
    n = x.shape[1:].numel()
    k = n - int(np.round(n * percentile / 100.0))
    t = x.view((b, c * h * w))
    v, i = torch.topk(t, k, dim=1)
    t.zero_().scatter_(dim=1, index=i, src=v)
    s2 = x.sum(dim=[1, 2, 3])
    return original * torch.exp(s1 / s2)[:, None, None, None]


def _torch_shaped(fn, x: np.ndarray, percentile: float) -> np.ndarray:
    return fn(torch.from_numpy(x.copy())[:, :, None, None], percentile)[:, :, 0, 0].numpy()


def _energy_rows(features: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return np.array([energy_ref(weight @ a + bias) for a in features])


@pytest.mark.parametrize("percentile", [90.0, 50.0, 99.0])
def test_react_matches_sort_percentile_and_scalar_energy(data, percentile) -> None:
    det = ReAct(percentile=percentile).fit(data["train"], data["labels"], data["weight"], data["bias"])
    c = percentile_by_sort(data["train"], percentile)
    assert det.threshold_ == pytest.approx(c, rel=1e-12)
    expected = _energy_rows(np.minimum(data["test"], c), data["weight"], data["bias"])
    np.testing.assert_allclose(det.score(data["test"]), expected, rtol=RTOL)


def test_react_absolute_threshold_reproduces_the_reference_codes_setting(data) -> None:
    det = ReAct(threshold=0.9).fit(data["train"], data["labels"], data["weight"], data["bias"])
    assert det.threshold_ == 0.9
    expected = _energy_rows(np.minimum(data["test"], 0.9), data["weight"], data["bias"])
    np.testing.assert_allclose(det.score(data["test"]), expected, rtol=RTOL)


@pytest.mark.parametrize("percentile", [90.0, 65.0, 20.0])  # 20: the cut falls among zeros
def test_ash_s_matches_the_papers_torch_code(data, percentile) -> None:
    expected_shaped = _torch_shaped(ash_s_torch, data["test"], percentile)
    np.testing.assert_allclose(ash_s(data["test"], percentile), expected_shaped, rtol=RTOL)
    det = ASH(percentile=percentile).fit(data["train"], data["labels"], data["weight"], data["bias"])
    expected = _energy_rows(expected_shaped, data["weight"], data["bias"])
    np.testing.assert_allclose(det.score(data["test"]), expected, rtol=RTOL)


@pytest.mark.parametrize("percentile", [85.0, 65.0, 20.0])
def test_scale_matches_the_papers_torch_code(data, percentile) -> None:
    expected_shaped = _torch_shaped(scale_torch, data["test"], percentile)
    np.testing.assert_allclose(scale_shape(data["test"], percentile), expected_shaped, rtol=RTOL)
    det = SCALE(percentile=percentile).fit(data["train"], data["labels"], data["weight"], data["bias"])
    expected = _energy_rows(expected_shaped, data["weight"], data["bias"])
    np.testing.assert_allclose(det.score(data["test"]), expected, rtol=RTOL)


def test_kept_count_rounds_like_the_papers_and_keeps_at_least_one() -> None:
    assert kept_count(512, 90.0) == 512 - 461
    assert kept_count(384, 85.0) == 384 - 326
    assert kept_count(10, 100.0) == 1  # the original would keep 0 and divide by a zero sum
    assert kept_count(10, 0.0) == 10


def test_all_zero_rows_stay_finite() -> None:
    """A fully dead feature vector has s2 = 0; shaping must leave it at zero, not NaN."""
    zeros = np.zeros((2, 8))
    assert np.array_equal(ash_s(zeros), zeros) and np.array_equal(scale_shape(zeros), zeros)


def test_react_threshold_is_a_percentile_of_all_entries() -> None:
    x = np.arange(100.0).reshape(10, 10)
    assert react_threshold(x, 90.0) == pytest.approx(89.1)
    with pytest.raises(InputError, match="percentile"):
        ReAct(percentile=101.0)
