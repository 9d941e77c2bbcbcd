"""The benign changes of the robustness benchmark (stream_monitor/evaluation/benign_changes.py) do what
their names say, on a real HyperKvasir frame."""

from __future__ import annotations

import numpy as np
import pytest

from stream_monitor.capture.scope_mask import ScopeMasker
from stream_monitor.data.images import list_images, read_image
from stream_monitor.evaluation.benign_changes import (
    CHANGES,
    border_crop,
    capture_1080p,
    gamma,
    h264_round_trip,
    jpeg,
    shift,
)


@pytest.fixture(scope="module")
def frames(shared_data) -> list[np.ndarray]:
    paths = list_images(shared_data / "hyperkvasir-lgi" / "normal-cecum")[:2]
    return [read_image(p) for p in paths]


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


def test_every_change_returns_uint8_bgr_frames(frames) -> None:
    for name, change in CHANGES.items():
        out = change(frames)
        assert len(out) == len(frames), name
        assert all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in out), name


def test_lower_jpeg_quality_changes_more(frames) -> None:
    errors = [_mad(frames[0], jpeg(q)(frames[:1])[0]) for q in (90, 75, 60)]
    assert 0 < errors[0] < errors[1] < errors[2] < 8


def test_h264_round_trip_keeps_size_and_content(frames) -> None:
    odd = [np.ascontiguousarray(frames[0][:-1, :-1])]  # odd sizes are padded for 4:2:0, then cropped back
    for original, decoded in zip(frames + odd, h264_round_trip(frames + odd)):
        assert decoded.shape == original.shape
        assert 0 < _mad(original, decoded) < 8


def test_crop_and_shift_move_the_stated_share_of_the_border(frames) -> None:
    h, w = frames[0].shape[:2]
    assert border_crop(0.02)(frames)[0].shape[:2] == (h - 2 * round(0.02 * h), w - 2 * round(0.02 * w))
    moved = shift(0.03)(frames)[0]
    dy, dx = round(0.03 * h), round(0.03 * w)
    assert not moved[:dy].any() and not moved[:, :dx].any()
    np.testing.assert_array_equal(moved[dy:, dx:], frames[0][:h - dy, :w - dx])


def test_gamma_keeps_black_and_white() -> None:
    frame = np.array([[[0, 128, 255]]], np.uint8)
    out = gamma(1.1)([frame])[0]
    assert out[0, 0, 0] == 0 and out[0, 0, 2] == 255 and out[0, 0, 1] < 128


def test_capture_1080p_is_undone_by_the_live_scope_mask(frames) -> None:
    """The live path must find the picture on the black 1920×1080 frame and crop close to it."""
    canvas = capture_1080p(frames[:1])[0]
    assert canvas.shape == (1080, 1920, 3)
    cropped = ScopeMasker("auto").apply(canvas)
    h, w = frames[0].shape[:2]
    expected_width = round(w * 1080 / h)
    assert abs(cropped.shape[1] - expected_width) <= 0.05 * expected_width


def test_every_change_has_its_own_feature_cache_file() -> None:
    """"brightness -10%" and "+10%" once shared one cache file, so the +10 % column repeated the -10 % one."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "benign_change.py"
    spec = importlib.util.spec_from_file_location("benign_change", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert len({module.change_slug(c) for c in CHANGES}) == len(CHANGES)


def _benign_change_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "benign_change.py"
    spec = importlib.util.spec_from_file_location("benign_change", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_measures_a_seed_model_on_its_own_split_and_refuses_another() -> None:
    """A classifier trained on split seed 3 is benchmarked on seed 3's ID test frames; the committed
    seed-0 split holds some of its training images, so using it is an error, not a silent leak."""
    from stream_monitor.data.split import load_split, resplit
    from stream_monitor.errors import InputError
    from stream_monitor.evaluation.datasets import DEFAULT_SPLIT

    module = _benign_change_module()
    committed = load_split(DEFAULT_SPLIT)
    split = module.model_split(DEFAULT_SPLIT, 3, {"split_seed": 3})
    assert split.seed == 3 and split.paths("test") == resplit(committed, 3).paths("test")
    assert set(split.paths("test")) & set(committed.paths("train"))  # why it matters: the splits differ
    assert module.model_split(DEFAULT_SPLIT, None, {"split_seed": committed.seed}).paths("test") == committed.paths("test")
    with pytest.raises(InputError, match="--split-seed 3"):
        module.model_split(DEFAULT_SPLIT, None, {"split_seed": 3})
    with pytest.raises(InputError, match="split seed 0"):
        module.model_split(DEFAULT_SPLIT, 2, {"split_seed": 0})


def test_changed_features_are_cached_by_model_files_and_change(shared_data, tmp_path, monkeypatch) -> None:
    """A second `fit --fit-over capture-chain` (other detector options) must not repeat the forward passes, and
    must never be served another change's, another model's or an edited file's features."""
    import shutil

    from stream_monitor import bundled
    from stream_monitor.evaluation import benign_changes
    from stream_monitor.evaluation.benign_changes import changed_features
    from stream_monitor.models.registry import load_classifier

    model, _ = load_classifier(bundled.MODEL)
    paths = []
    for source in list_images(shared_data / "hyperkvasir-lgi" / "normal-cecum")[:3]:
        paths.append(tmp_path / source.name)
        shutil.copy(source, paths[-1])
    cache = tmp_path / "cache"
    first = changed_features(model, paths, "crop 3%", with_stats=True, cache_dir=cache)
    assert first.shape[0] == 3 and len(list((cache / "changed").glob("*.npz"))) == 1

    def no_forward(*args, **kwargs):
        raise AssertionError("served from the cache, the model must not run")

    real = benign_changes._changed_features
    monkeypatch.setattr(benign_changes, "_changed_features", no_forward)
    np.testing.assert_array_equal(changed_features(model, paths, "crop 3%", with_stats=True, cache_dir=cache), first)
    monkeypatch.setattr(benign_changes, "_changed_features", real)

    other_change = changed_features(model, paths, "shift 3%", with_stats=True, cache_dir=cache)
    without_stats = changed_features(model, paths, "crop 3%", with_stats=False, cache_dir=cache)
    assert not np.array_equal(other_change, first) and without_stats.shape[1] < first.shape[1]
    changed_features(model, paths, jpeg(60), cache_dir=cache)  # a function is never cached: nothing written
    assert len(list((cache / "changed").glob("*.npz"))) == 3
    import cv2

    cv2.imwrite(str(paths[0]), np.ascontiguousarray(read_image(paths[0])[::-1]))  # edited: a new key, recomputed
    edited = changed_features(model, paths, "crop 3%", with_stats=True, cache_dir=cache)
    assert not np.array_equal(edited[0], first[0]) and np.allclose(edited[1:], first[1:], atol=1e-5)
    assert len(list((cache / "changed").glob("*.npz"))) == 4
