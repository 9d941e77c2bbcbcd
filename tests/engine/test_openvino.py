"""OpenVINO, the default CPU back-end: installed with the package, chosen by `auto`, and scoring like
the calibration on the bundled model and real frames.

The bundled detector's threshold was calibrated on float64 NERO scores of torch float32 features (the
reference `Scorer`). The default precision (fp32) must keep that meaning: benchmarks/openvino_parity.py
measured a worst relative score error of ~2e-6 over the dev split's 441 ID test and OOD images
(benchmarks/results/openvino_parity-*); the bound here, 1e-5, is the one every fp32 back-end is held to.
"""

from __future__ import annotations

import numpy as np
import pytest

from stream_monitor.config import ModelConfig
from stream_monitor.engine import EngineOptions, Scorer, create_scorer
from stream_monitor.engine.backends import select_backend
from stream_monitor.preprocess import normalize_uint8

from .conftest import bundled_with_real_frames


@pytest.fixture(scope="module")
def bundled_setup() -> tuple:
    """The bundled EfficientNet-Lite0 + detector, and 8 real frames: 4 ID test images, 4 polyps."""
    return bundled_with_real_frames()


def test_openvino_is_installed_and_auto_picks_it_on_the_cpu() -> None:
    """A runtime dependency, not an extra: a missing install fails here instead of silently running
    the slower torch-cpu back-end."""
    cls, skipped = select_backend("auto", device="cpu")
    assert cls.name == "openvino", skipped
    assert ModelConfig().backend == "auto" and ModelConfig().precision == "fp32"


def test_default_precision_scores_the_bundled_model_like_the_calibration(bundled_setup: tuple) -> None:
    """OpenVINO fp32 vs the float64 detector on real frames: every score within 1e-5 relative, the same
    alert decisions, classes and explanation neurons — fed normalised frames, or the ring's uint8 frames
    that the graph normalises itself (the live path)."""
    model, detector, rgb = bundled_setup
    images = normalize_uint8(rgb)
    fast = create_scorer(model, detector, "auto", device="cpu", options=EngineOptions(precision="fp32", threads=1))
    assert fast.backend == "openvino" and fast.engine.precision == "fp32"
    got, ref = fast.score_batch(images), Scorer(model, detector).score_batch(images)
    relative = np.abs(got.score / ref.score - 1)
    assert relative.max() <= 1e-5, relative
    # The bundled detector scores by the residual alone; distance, bias term and ρ are reported parts.
    # They get 1e-4: the L1 distance sums 50 PCA coordinates, and one polyp frame measured 4.5e-5.
    for part in ("distance", "bias_term", "rho"):
        np.testing.assert_allclose(getattr(got, part), getattr(ref, part), rtol=1e-4,
                                   atol=1e-4 * np.abs(getattr(ref, part)).max(), err_msg=part)
    np.testing.assert_array_equal(got.over_threshold, ref.over_threshold)
    np.testing.assert_array_equal(got.predicted, ref.predicted)
    np.testing.assert_array_equal(got.top_neurons, ref.top_neurons)
    assert ref.over_threshold[4:].any() and not ref.over_threshold[:4].all()  # both sides of the threshold
    live = fast.score_uint8(rgb)
    assert np.abs(live.score / ref.score - 1).max() <= 1e-5
    np.testing.assert_array_equal(live.over_threshold, ref.over_threshold)
