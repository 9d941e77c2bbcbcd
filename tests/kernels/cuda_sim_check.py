"""Numba CUDA kernels against the NumPy reference in Numba's CUDA simulator (or on a real GPU).

Not collected by the main run (the name does not match test_*.py): `test_cuda_sim.py` runs this file
in a subprocess with NUMBA_ENABLE_CUDASIM=1, because the simulator must be chosen before numba is first
imported and the main pytest process has long imported it. On a GPU machine `benchmarks/gpu_check.sh`
runs it without the simulator. The simulator runs every CUDA thread as a Python thread, so its shapes
are the issue's widths and centroid counts with small batches (the kernel's indexing does not depend on
B: one block per row).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1" and os.environ.get("STREAM_MONITOR_REAL_CUDA") != "1":
    pytest.skip("run by test_cuda_sim.py with NUMBA_ENABLE_CUDASIM=1 (or with STREAM_MONITOR_REAL_CUDA=1 on a GPU)",
                allow_module_level=True)

from numba import cuda  # noqa: E402

from stream_monitor.kernels import cuda as cuda_kernels  # noqa: E402
from stream_monitor.kernels import dispatch, reference  # noqa: E402

from .cases import PCA_WIDTHS, RAW_WIDTHS, RTOL, distance_problem  # noqa: E402

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
CASES = [(batch, k) for batch, k in ((1, 1), (5, 3), (3, 11), (2, 50))] if SIMULATED else \
    [(batch, k) for batch in (1, 7, 256, 1024) for k in (1, 3, 11, 50)]


def test_kernels_are_available() -> None:
    ok, why = cuda_kernels.available()
    assert ok, why


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width", PCA_WIDTHS + RAW_WIDTHS)
def test_nearest_l1_matches_reference(width: int, dtype: type) -> None:
    for batch, n_centroids in CASES:
        samples, centroids = distance_problem(batch, width, n_centroids, dtype, seed=width + batch)
        distance, index = dispatch.nearest_l1(cuda.to_device(samples), cuda.to_device(centroids))
        expected, expected_index = reference.nearest_l1(samples, centroids)
        np.testing.assert_allclose(distance.copy_to_host(), expected, rtol=RTOL[dtype])
        np.testing.assert_array_equal(index.copy_to_host(), expected_index)


def test_ties_take_the_first_centroid_and_nan_rows_are_invalid() -> None:
    samples, centroids = distance_problem(4, 64, 3, np.float32)
    centroids = np.concatenate([centroids, centroids])
    samples[2, 5] = np.nan
    distance, index = dispatch.nearest_l1(cuda.to_device(samples), cuda.to_device(centroids))
    distance, index = distance.copy_to_host(), index.copy_to_host()
    assert np.isnan(distance[2]) and index[2] == -1
    assert (index[[0, 1, 3]] < 3).all() and (index[[0, 1, 3]] >= 0).all()


@pytest.mark.parametrize("switches", [(True, True, True), (True, False, True), (False, True, False),
                                      (False, False, True)])
def test_fuse_scores_and_flags_match_reference(switches: tuple[bool, bool, bool]) -> None:
    rng = np.random.default_rng(0)
    distance = (rng.random(300) * 100).astype(np.float32)
    distance[7] = np.nan
    bias_relevance, rho = rng.normal(size=300).astype(np.float32), rng.random(300).astype(np.float32)
    residual = rng.random(300).astype(np.float32) if not (switches[0] or switches[1]) else None
    score, bias_term = dispatch.fuse_scores(cuda.to_device(distance), cuda.to_device(bias_relevance),
                                            cuda.to_device(rho), 3.5, *switches,
                                            residual=None if residual is None else cuda.to_device(residual))
    expected, expected_term = reference.fuse_scores(distance, bias_relevance, rho, 3.5, *switches, residual)
    np.testing.assert_allclose(score.copy_to_host(), expected, rtol=1e-6)
    np.testing.assert_allclose(bias_term.copy_to_host(), expected_term, rtol=1e-6)
    flags = dispatch.threshold_flags(score, 40.0)
    np.testing.assert_array_equal(flags.copy_to_host(), reference.threshold_flags(score.copy_to_host(), 40.0))


def test_too_many_centroids_is_a_clear_error() -> None:
    samples, centroids = distance_problem(1, 4, cuda_kernels.MAX_CENTROIDS + 1, np.float32)
    with pytest.raises(ValueError, match="centroids"):
        dispatch.nearest_l1(cuda.to_device(samples), cuda.to_device(centroids))


@pytest.mark.parametrize("switches", [(True, True, True), (False, True, False), (False, False, True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_fused_score_stage_equals_the_single_kernels_on_the_host(switches: tuple[bool, bool, bool],
                                                                    dtype: type) -> None:
    """One launch (nearest centroid, fusion, flags, nearest raw class mean) = the reference kernels in
    turn, NaN rows and centroid ties included."""
    rng = np.random.default_rng(1)
    width, n_classes = 512, 3
    for batch, n_centroids in CASES:
        projected, centroids = distance_problem(batch, 40, n_centroids, dtype, seed=batch)
        relevance = rng.normal(size=(batch, width)).astype(dtype)
        bias_relevance = rng.normal(size=batch).astype(dtype)
        raw_means = rng.normal(size=(n_classes, width + 1)).astype(dtype)
        rho = rng.random(batch).astype(dtype)
        residual = rng.random(batch).astype(dtype) if switches == (False, False, True) else None
        if batch > 2:
            projected[1, 3] = np.nan
            relevance[2, 7] = np.nan
        scores = np.sort(reference.fuse_scores(reference.nearest_l1(projected, centroids)[0], bias_relevance, rho,
                                               2.5, *switches, residual)[0])
        scores = scores[np.isfinite(scores)]
        # Between two scores, never on one: a score equal to the threshold would flip on rounding.
        threshold = float(scores[0] / 2 if len(scores) < 2 else (scores[0] + scores[1]) / 2)
        device = {name: cuda.to_device(x) for name, x in (("p", projected), ("c", centroids), ("r", relevance),
                                                           ("m", raw_means), ("b", bias_relevance), ("rho", rho))}
        fused = dispatch.score_stage(device["p"], device["c"], device["r"], device["m"], device["b"], device["rho"],
                                     2.5, threshold, switches,
                                     residual=None if residual is None else cuda.to_device(residual))
        host = dispatch.score_stage(projected, centroids, relevance, raw_means, bias_relevance, rho, 2.5, threshold,
                                    switches, residual=residual)
        for name in ("distance", "score", "bias_term"):
            np.testing.assert_allclose(fused[name].copy_to_host(), host[name], rtol=RTOL[dtype], err_msg=name)
        for name in ("index", "reference", "flags"):
            np.testing.assert_array_equal(fused[name].copy_to_host(), host[name], err_msg=name)
