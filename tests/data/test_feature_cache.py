"""The feature cache (stream_monitor.data.features.extract_paths) keys on resolved paths and file content.

Issue 16: the key was (path string, size, mtime in whole seconds), so `../shared/data/x.jpg` from one
checkout and the same file from another got different keys (extracted twice), and a file rewritten
within the same second at the same size was served its old features."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from stream_monitor.data.features import extract_paths, inputs_key

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "hyperkvasir-lgi" / "polyp"


class _CountingModel(torch.nn.Module):
    """The adapter's contract (logits, features, feature map) from the mean colour; counts its calls."""

    feature_dim, num_classes = 3, 2

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor):
        self.calls += 1
        features = x.mean(dim=(2, 3))
        return features[:, :2], features, None


@pytest.fixture
def images(tmp_path) -> list[Path]:
    found = sorted(SHARED.glob("*.jpg"))[:3]
    assert len(found) == 3, f"development data not found at {SHARED}"
    return found


def test_one_file_spelt_two_ways_has_one_key_and_an_edit_changes_it(tmp_path, images):
    dotted = [Path(str(p.parent) + "/../polyp/" + p.name) for p in images]  # another checkout's spelling
    link = tmp_path / "linked"
    link.symlink_to(SHARED)
    linked = [link / p.name for p in images]
    assert inputs_key("m", images) == inputs_key("m", dotted) == inputs_key("m", linked)
    assert inputs_key("m", images) != inputs_key("other-model", images)

    copy = tmp_path / "copy.jpg"
    shutil.copy(images[0], copy)
    before = inputs_key("m", [copy])
    stamp = copy.stat()
    data = bytearray(copy.read_bytes())
    data[-3] ^= 0xFF  # same size, and the old modification time put back
    copy.write_bytes(bytes(data))
    os.utime(copy, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert inputs_key("m", [copy]) != before


def test_a_cache_hit_under_another_spelling_skips_the_model_and_names_the_callers_paths(tmp_path, images):
    model = _CountingModel()
    first = extract_paths(model, images, "t", cache_dir=tmp_path / "cache", fingerprint="m", progress=False)
    calls = model.calls
    dotted = [Path(str(p.parent) + "/../polyp/" + p.name) for p in images]
    second = extract_paths(model, dotted, "t", cache_dir=tmp_path / "cache", fingerprint="m", progress=False)
    assert model.calls == calls  # served from the cache
    np.testing.assert_array_equal(first.features, second.features)
    assert second.names == tuple(str(p) for p in dotted)


def test_block_statistics_are_cached_beside_the_features(tmp_path, images):
    """An EfficientNet extraction stores its block statistics; a second read returns them unchanged, and
    a model without them (the counting model) gets None, never another model's statistics."""
    from stream_monitor.data.images import read_image
    from stream_monitor.models import create_model
    from stream_monitor.models.block_stats import forward_with_stats
    from stream_monitor.preprocess import preprocess_batch

    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 3, pretrained=False).eval()
    first = extract_paths(model, images, "x", tmp_path, progress=False)
    again = extract_paths(model, images, "x", tmp_path, progress=False)
    with torch.inference_mode():
        features, _, stats = forward_with_stats(model, torch.from_numpy(preprocess_batch([read_image(p) for p in images])))
    np.testing.assert_array_equal(first.block_stats, stats.numpy())
    np.testing.assert_array_equal(again.block_stats, first.block_stats)
    np.testing.assert_array_equal(again.extended(), np.hstack([features.numpy(), stats.numpy()]))
    plain = extract_paths(_CountingModel(), images, "x", tmp_path, fingerprint="counting", progress=False)
    assert plain.block_stats is None
