"""The zero-shot maps (explanations/distinct.py) on the bundled model's own blocks and real polyp frames:
distinctiveness is the distance to the nearest patch of the same frame outside the neighbourhood (checked
against a brute-force loop), the scene excludes the scope border, overlays and dark lumen, and the
combined map is zero off the scene and keeps the ordering of its factors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stream_monitor import bundled
from stream_monitor.data.images import read_image
from stream_monitor.errors import InputError
from stream_monitor.explanations.distinct import combine, dark_cells, distinctiveness, edge_weight, scene_cells
from stream_monitor.explanations.maps import residual_decomposition
from stream_monitor.explanations.patch import forward_with_blocks, patch_descriptors
from stream_monitor.models.registry import load_classifier
from stream_monitor.nero import NeroDetector
from stream_monitor.preprocess import normalize_uint8, to_model_rgb

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="module")
def polyps():
    """Three HyperKvasir polyp frames (with their masks) through the bundled model's blocks.2."""
    torch.set_num_threads(1)
    model, _ = load_classifier(bundled.MODEL)
    detector = NeroDetector.load(bundled.DETECTOR, *model.head_arrays())
    masks = sorted((DATA / "masks" / "hyperkvasir-polyp").glob("*.jpg"))[:3]
    rgb = np.stack([to_model_rgb(read_image(DATA / "hyperkvasir-lgi" / "polyp" / m.name)) for m in masks])
    with torch.inference_mode():
        _, feature_map, kept = forward_with_blocks(model, torch.from_numpy(normalize_uint8(rgb)), (2,))
    return rgb, patch_descriptors(kept).numpy(), feature_map.numpy(), detector


def test_distinctiveness_is_the_nearest_patch_outside_the_neighbourhood(polyps):
    _, descriptors, _, _ = polyps
    x = descriptors[:1, :, ::2, ::2]  # 14×14: a brute-force loop stays quick
    got = distinctiveness(x, radius=1)[0]
    _, c, h, w = x.shape
    for y, xx in [(0, 0), (7, 7), (13, 5)]:
        others = [np.linalg.norm(x[0, :, y, xx] - x[0, :, v, u]) for v in range(h) for u in range(w)
                  if max(abs(v - y), abs(u - xx)) > 1]
        assert got[y, xx] == pytest.approx(min(others), rel=1e-4)


def test_distinctiveness_on_chosen_cells_equals_the_full_search_there(polyps):
    rgb, descriptors, _, _ = polyps
    cells = scene_cells(rgb, *descriptors.shape[-2:], dark=50)
    assert 0 < cells.mean() < 1, "the frames must have cells off the scene for this check"
    full, chosen = distinctiveness(descriptors), distinctiveness(descriptors, cells=cells)
    np.testing.assert_allclose(chosen[cells], full[cells], rtol=1e-5)
    assert (chosen[~cells] == 0).all()


def test_a_pasted_foreign_patch_is_the_most_distinctive_cell(polyps):
    _, descriptors, _, _ = polyps
    x = descriptors[:1].copy()
    x[0, :, 10:12, 20:22] = x[0].max() * 3  # a 2×2 block unlike anything else in the frame
    got = distinctiveness(x, radius=1)[0]
    assert np.unravel_index(np.argmax(got), got.shape) in {(10, 20), (10, 21), (11, 20), (11, 21)}
    with pytest.raises(InputError, match="radius"):
        distinctiveness(x[:, :, :3, :3], radius=1)


def test_the_scene_drops_the_scope_border_and_dark_pixels(polyps):
    rgb, descriptors, _, _ = polyps
    h = descriptors.shape[-1]
    lit_only = scene_cells(rgb, h, h, dark=0)
    with_dark = scene_cells(rgb, h, h, dark=70)
    assert not lit_only[:, 0, 0].any() and not lit_only[:, -1, -1].any()  # the scope's black corners
    assert (with_dark <= lit_only).all() and with_dark.sum() < lit_only.sum()
    black = np.zeros((56, 56, 3), np.uint8)
    black[:, 28:] = 200
    assert dark_cells(black, 4, 4, dark=70)[:, :2].all() and not dark_cells(black, 4, 4, dark=70)[:, 3].any()


def test_the_combined_map_is_zero_off_the_scene_and_keeps_the_ordering(polyps):
    rgb, descriptors, feature_map, detector = polyps
    h = descriptors.shape[-1]
    dist = distinctiveness(descriptors, radius=1)
    scene = scene_cells(rgb, h, h, dark=70)
    for i in range(len(rgb)):
        score = residual_decomposition(feature_map[i], detector)
        sharp = combine(dist[i], scene[i], 1.0, 4.0, score)
        plain = combine(dist[i], scene[i], 1.0, 1.0, score)
        assert (sharp[~scene[i]] == 0).all() and (sharp[scene[i]] > 0).all()
        assert np.argmax(sharp) == np.argmax(plain)  # the power only sharpens the display
        on = scene[i]
        order = np.argsort(plain[on])
        assert (np.diff(sharp[on][order]) >= 0).all()  # monotone: a cell ranked above another stays so
    with pytest.raises(InputError):
        combine(None, scene[0], 1.0, 1.0, None)


def test_the_edge_weight_grows_with_the_distance_from_the_scene_edge():
    scene = np.zeros((9, 9), bool)
    scene[1:8, 1:8] = True  # a 7 × 7 scene: its outer ring touches the non-scene ring
    weight = edge_weight(scene, tau=2.0)
    assert weight[1, 4] == pytest.approx(1 - np.exp(-1 / 2.0), abs=1e-6)  # one cell from the edge
    assert weight[4, 4] == pytest.approx(1 - np.exp(-4 / 2.0), abs=1e-6)  # the centre: four cells in
    assert weight[0, 0] == 0 and (edge_weight(scene, tau=0.0) == 1).all()
    full = np.ones((5, 5), bool)  # the grid's outside is not scene either
    assert edge_weight(full, tau=1.0)[0, 2] == pytest.approx(1 - np.exp(-1.0), abs=1e-6)


def test_the_edge_weight_moves_the_maximum_off_the_scene_edge(polyps):
    rgb, descriptors, feature_map, detector = polyps
    h = descriptors.shape[-1]
    dist = distinctiveness(descriptors, radius=1)
    scene = scene_cells(rgb, h, h, dark=70)
    for i in range(len(rgb)):
        edge_cells = scene[i] & (edge_weight(scene[i], 1.0) < 1 - np.exp(-1.5))
        interior = scene[i] & ~edge_cells
        peaked = np.where(edge_cells, 1.2 * dist[i][interior].max(), dist[i])  # the edge made the most unusual
        plain, weighted = combine(peaked, scene[i], 0.0, 1.0), combine(peaked, scene[i], 0.0, 1.0, edge_tau=3.0)
        assert edge_cells.ravel()[np.argmax(plain)] and not edge_cells.ravel()[np.argmax(weighted)]
