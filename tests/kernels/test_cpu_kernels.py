"""Numba CPU kernels against the NumPy reference, over the issue's shapes and the edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from stream_monitor import kernels
from stream_monitor.kernels import cpu, reference
from stream_monitor.nero import functional as F

from .cases import BATCHES, CENTROIDS, FEATURE_DIMS, PCA_WIDTHS, RAW_WIDTHS, RTOL, distance_problem, relevance_problem


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("width", PCA_WIDTHS + RAW_WIDTHS)
def test_nearest_l1_matches_reference(batch: int, width: int, dtype: type) -> None:
    for n_centroids in CENTROIDS:
        samples, centroids = distance_problem(batch, width, n_centroids, dtype, seed=batch + width)
        distance, index = kernels.nearest_l1(samples, centroids)
        expected, expected_index = reference.nearest_l1(samples, centroids)
        assert distance.dtype == dtype and index.dtype == np.int64
        np.testing.assert_allclose(distance, expected, rtol=RTOL[dtype])
        np.testing.assert_array_equal(index, expected_index)


def test_nearest_l1_reference_is_the_detectors_distance() -> None:
    samples, centroids = distance_problem(50, 341, 3, np.float64)
    all_distances = F.l1_distances(samples, centroids)
    distance, index = reference.nearest_l1(samples, centroids)
    np.testing.assert_allclose(distance, all_distances.min(axis=1), rtol=1e-14)
    np.testing.assert_array_equal(index, all_distances.argmin(axis=1))


def test_nearest_l1_tie_takes_the_first_centroid() -> None:
    """Duplicated centroids tie exactly: the first index wins, as np.argmin and the detector do."""
    samples, centroids = distance_problem(64, 341, 3, np.float32)
    centroids = np.concatenate([centroids, centroids])  # 0..2 and 3..5 identical
    for batch in (1, 64):
        _, index = kernels.nearest_l1(samples[:batch], centroids)
        assert (index < 3).all()


@pytest.mark.parametrize("batch", [1, 64])
def test_nan_rows_are_invalid_not_scored(batch: int) -> None:
    samples, centroids = distance_problem(batch, 341, 5, np.float32)
    samples[0, 17] = np.nan
    distance, index = kernels.nearest_l1(samples, centroids)
    assert np.isnan(distance[0]) and index[0] == -1
    assert np.isfinite(distance[1:]).all() and (index[1:] >= 0).all()
    features, relevance = relevance_problem(batch, 512, np.float32)
    relevance[0, 3] = np.nan
    rho = kernels.low_relevance_ratio(features, relevance, 175)
    assert np.isnan(rho[0]) and np.isfinite(rho[1:]).all()
    score, _ = kernels.fuse_scores(distance, relevance[:, 0], rho, 0.5)
    flags = kernels.threshold_flags(score, -1.0)
    assert flags[0] == kernels.FLAG_INVALID  # NaN is never "over" nor silently "in distribution"
    assert (flags[1:] == kernels.FLAG_OVER).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dim", FEATURE_DIMS)
@pytest.mark.parametrize("batch", BATCHES)
def test_low_relevance_ratio_matches_reference(batch: int, dim: int, dtype: type) -> None:
    features, relevance = relevance_problem(batch, dim, dtype, seed=dim)
    for k in (1, 175, round(175 / 512 * dim), dim - 1, dim):
        rho = kernels.low_relevance_ratio(features, relevance, k)
        np.testing.assert_allclose(rho, reference.low_relevance_ratio(features, relevance, k), rtol=RTOL[dtype],
                                   atol=1e-7)


def test_low_relevance_ratio_reference_is_the_detectors_rho() -> None:
    features, relevance = relevance_problem(40, 512, np.float64)
    np.testing.assert_allclose(reference.low_relevance_ratio(features, relevance, 175),
                               F.low_relevance_norm_ratio(features, relevance, 175), rtol=1e-14)


def test_low_relevance_ratio_ties_and_zero_norm() -> None:
    """Tied relevances straddling the k-th place take the earliest neurons (stable order); ±0.0 tie;
    an all-zero feature row has rho 0, not a division by zero."""
    features = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0], [5.0, 1.0, 1.0, 1.0]], dtype=np.float32)
    relevance = np.array([[0.5, 0.5, 0.5, 0.1], [-0.0, 0.0, 0.0, 0.0], [-0.0, 0.0, 0.3, -1.0]], dtype=np.float32)
    for batch_rows in (slice(0, 3), [0, 1, 2] * 20):
        rho = kernels.low_relevance_ratio(features[batch_rows], relevance[batch_rows], 2)
        np.testing.assert_allclose(rho, reference.low_relevance_ratio(features[batch_rows], relevance[batch_rows], 2))
    np.testing.assert_allclose(kernels.low_relevance_ratio(features, relevance, 2), [5 / 10, 0.0, 6 / 8])


# Every (use_distance, use_bias, use_rho) × residual combination NeroConfig accepts (a score needs
# distance, bias or the residual).
FUSE_CASES = [(switches, residual) for switches in [(True, True, True), (True, False, True), (False, True, False),
                                                    (True, True, False), (False, False, True), (False, False, False)]
              for residual in (False, True) if switches[0] or switches[1] or residual]


@pytest.mark.parametrize(("switches", "with_residual"), FUSE_CASES)
@pytest.mark.parametrize("batch", [1, 1024])
def test_fuse_scores_matches_reference_and_detector(batch: int, switches: tuple[bool, bool, bool],
                                                    with_residual: bool) -> None:
    """Every switch combination the detector accepts, with and without the robust residual factor
    (distance and bias both off: the residual alone, times ρ if on — a sum of no terms is 1)."""
    rng = np.random.default_rng(batch)
    distance, bias_relevance, rho = rng.random(batch) * 100, rng.normal(size=batch), rng.random(batch)
    residual = rng.random(batch) if with_residual else None
    score, bias_term = kernels.fuse_scores(distance, bias_relevance, rho, 3.5, *switches, residual=residual)
    expected, expected_term = reference.fuse_scores(distance, bias_relevance, rho, 3.5, *switches, residual)
    np.testing.assert_allclose(score, expected, rtol=1e-15)
    np.testing.assert_allclose(bias_term, expected_term, rtol=1e-15)
    np.testing.assert_allclose(expected, F.fuse_score(distance, expected_term, rho, *switches, residual), rtol=1e-15)


def test_threshold_flags() -> None:
    score = np.array([0.5, 1.0, 1.5, np.nan, np.inf, -np.inf], dtype=np.float32)
    flags = kernels.threshold_flags(score, 1.0)
    np.testing.assert_array_equal(flags, reference.threshold_flags(score, 1.0))
    np.testing.assert_array_equal(flags, [0, 0, 1, 2, 3, 2])


@pytest.mark.parametrize("batch", [1, 256])
def test_top_abs_is_the_explanations_stable_order(batch: int) -> None:
    features, relevance = relevance_problem(batch, 512, np.float32)
    relevance[:, 10] = relevance[:, 11] = 1.0  # an exact tie at the top: the earlier index first
    index, top = kernels.top_abs(relevance, 5)
    expected_index, expected_top = reference.top_abs(relevance, 5)
    np.testing.assert_array_equal(index, expected_index)
    np.testing.assert_array_equal(top, expected_top)
    assert (index[:, :2] == [10, 11]).all()


def test_torch_tensors_come_back_as_torch_tensors_without_copies() -> None:
    import torch
    samples, centroids = distance_problem(8, 341, 3, np.float32)
    distance, index = kernels.nearest_l1(torch.from_numpy(samples), torch.from_numpy(centroids))
    assert isinstance(distance, torch.Tensor) and distance.dtype == torch.float32 and index.dtype == torch.int64
    np.testing.assert_array_equal(distance.numpy(), kernels.nearest_l1(samples, centroids)[0])
    assert kernels.implementation_for(torch.from_numpy(samples)) == "numba-cpu"


def test_reference_switch_routes_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_MONITOR_KERNELS", "reference")
    samples, centroids = distance_problem(4, 16, 2, np.float32)
    assert kernels.implementation_for(samples) == "numpy-reference"
    assert kernels.nearest_l1(samples, centroids)[0].dtype == np.float64  # the reference computes in float64


def test_serial_and_parallel_kernels_agree() -> None:
    """The parallel=True builds (used from PARALLEL_MIN_ROWS rows) compute exactly what the serial ones do."""
    samples, centroids = distance_problem(300, 341, 7, np.float32)
    features, relevance = relevance_problem(300, 512, np.float32)
    outputs = []
    for variant in (0, 1):  # serial, parallel
        distance, index = np.empty(300, np.float32), np.empty(300, np.int64)
        cpu._NEAREST[variant](samples, centroids, distance, index)
        rho = np.empty(300, np.float32)
        cpu._RHO[variant](features, relevance, 175, rho)
        top_index, top = np.empty((300, 5), np.int64), np.empty((300, 5), np.float32)
        cpu._TOP[variant](relevance, 5, top_index, top)
        outputs.append((distance, index, rho, top_index, top))
    for serial, parallel in zip(*outputs, strict=True):
        np.testing.assert_array_equal(serial, parallel)


def test_low_relevance_ratio_on_tie_heavy_rows() -> None:
    """Relevances drawn from a handful of values (±0.0 among them) so that ties straddle the k-th place
    at 0, below it and above it, and the k smallest are sometimes exactly the negatives or exactly the
    non-positives — every branch of the kernel's selection, against the stable-sort reference."""
    rng = np.random.default_rng(7)
    palette = np.array([-2.0, -1.0, -0.0, 0.0, 0.5, 1.0, 3.0])
    for trial in range(300):
        width = int(rng.integers(1, 40))
        batch = 1 if trial % 2 else 40
        relevance = rng.choice(palette, size=(batch, width)).astype(np.float32)
        if trial % 3 == 0:
            relevance += rng.normal(scale=1e-3, size=relevance.shape).astype(np.float32) * (relevance != 0)
        features = rng.random((batch, width)).astype(np.float32) * (rng.random((batch, width)) > 0.2)
        k = int(rng.integers(1, width + 1))
        np.testing.assert_allclose(kernels.low_relevance_ratio(features, relevance, k),
                                   reference.low_relevance_ratio(features, relevance, k), rtol=1e-6, atol=1e-7,
                                   err_msg=f"trial {trial}, k={k}")
