"""The patch memory's contract: exact nearest-neighbour distances, a coreset that covers rare normal
appearance, a lossless plain-array round trip, and a valid region that drops the scope's black mask and
the green position box of a real centre-A frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from stream_monitor.capture.scope_mask import find_scope_box
from stream_monitor.errors import InputError
from stream_monitor.evaluation.datasets import SHARED_DATA
from stream_monitor.preprocess import normalize_uint8, to_model_rgb
from stream_monitor.site.patch_memory import (
    PatchFeatureExtractor,
    PatchMemory,
    frame_score,
    scored_cells,
    specular_cells,
    valid_pixels,
    valid_region,
)

CENTRE_C_FRAME = SHARED_DATA / "sequences" / "polypgen-negative" / "seq19_neg" / "0001_seq19_img1.jpg"  # glossy
CENTRE_A_FRAME = SHARED_DATA / "sequences" / "polypgen-negative" / "seq01_neg" / "0006_seq1_img6.jpg"
CENTRE_A_POLYP = SHARED_DATA / "polypgen-positive" / "centre_A" / "img001.jpg"


def _model_rgb(path):
    assert path.is_file(), f"development data missing: {path}"
    frame = cv2.imread(str(path))
    return to_model_rgb(find_scope_box(frame).crop(frame))


def test_distances_match_brute_force_and_are_zero_on_the_memory():
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(300, 16)).astype(np.float32)
    memory = PatchMemory(bank)
    queries = rng.normal(size=(2, 16, 5, 7)).astype(np.float32)
    flat = queries.transpose(0, 2, 3, 1).reshape(-1, 16)
    expected = np.sqrt(((flat[:, None, :] - bank[None]) ** 2).sum(-1)).min(1).reshape(2, 5, 7)
    np.testing.assert_allclose(memory.distances(queries), expected, rtol=1e-4, atol=1e-4)
    # several chunks, the last one partial: every query row still meets every memory entry
    np.testing.assert_allclose(memory.nearest(flat, chunk=16), expected.ravel(), rtol=1e-4, atol=1e-4)
    assert memory.nearest(bank[:50]).max() < 1e-2


def test_coreset_keeps_a_rare_far_cluster_that_random_sampling_would_miss():
    """k-center picks points by coverage, not density: 5 of 5000 patches far away must be remembered."""
    rng = np.random.default_rng(1)
    common = rng.normal(size=(4995, 8)).astype(np.float32)
    rare = (rng.normal(size=(5, 8)) * 0.1 + 20).astype(np.float32)
    memory = PatchMemory.fit(np.concatenate([common, rare]), coreset_size=50, seed=0)
    assert memory.size == 50
    assert memory.nearest(rare).max() < 1.0
    assert memory.nearest(common).max() < np.sqrt(((common[:, None] - common[None, :50]) ** 2).sum(-1)).min(1).max()


def test_round_trip_through_plain_arrays_is_exact():
    rng = np.random.default_rng(2)
    memory = PatchMemory.fit(rng.normal(size=(400, 12)).astype(np.float32), coreset_size=40, seed=3)
    arrays = memory.to_arrays()
    assert all(a.dtype != object for a in arrays.values())
    again = PatchMemory.from_arrays(arrays)
    queries = rng.normal(size=(1, 12, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(again.distances(queries), memory.distances(queries))


def test_bad_input_is_refused():
    with pytest.raises(InputError):
        PatchMemory.fit(np.full((10, 4), np.nan, np.float32), 5)
    with pytest.raises(InputError):
        PatchMemory(np.zeros((10, 4), np.float32)).distances(np.zeros((1, 5, 2, 2), np.float32))


def test_frame_score_uses_only_valid_cells_and_is_nan_without_any():
    maps = np.zeros((2, 4, 4))
    maps[:, 0, 0] = 100.0  # an invalid corner cell with a huge distance
    maps[:, 2, 2] = 3.0
    valid = np.ones((2, 4, 4), bool)
    valid[:, 0, 0] = False
    valid[1] = False
    scores = frame_score(maps, valid, top_k=1)
    assert scores[0] == 3.0 and np.isnan(scores[1])
    assert frame_score(maps, None, top_k=1)[0] == 100.0
    assert frame_score(maps, valid, top_k=2)[0] == 1.5


def test_valid_region_drops_black_corners_and_the_green_position_box():
    rgb = _model_rgb(CENTRE_A_FRAME)  # crop includes the green box on the left (see scope_mask)
    valid = valid_region(rgb[None], 28, 28)[0]
    small = cv2.resize(rgb, (28, 28), interpolation=cv2.INTER_AREA).astype(int)
    green = (small[..., 1] > small[..., 0] + 60) & (small[..., 1] > small[..., 2])
    dark = small.max(-1) < 20
    assert green.sum() > 10 and dark.sum() > 10, "the frame should show both the box and the mask"
    assert not valid[green].any()
    assert not valid[dark].any()
    assert valid[10:18, 12:20].all(), "the middle of the scope image is colon"
    assert valid_region(rgb[None, ..., ::-1].copy(), 28, 28)[0].tolist() == valid.tolist(), "BGR = RGB"


def test_valid_pixels_is_the_colon_at_full_resolution_and_agrees_with_the_grid():
    """The pixel mask (what a crop to the colon uses) holds the scope image only: the green box and the
    black side panel of this 1080p centre-A frame lie outside it, and its cells are valid_region's
    cells before the edge erosion."""
    rgb = _model_rgb(CENTRE_A_FRAME)
    pixels = valid_pixels(rgb)
    assert pixels.shape == rgb.shape[:2] and pixels.dtype == np.uint8 and set(np.unique(pixels)) == {0, 1}
    columns = np.flatnonzero(pixels.any(0))
    green = (rgb[..., 1].astype(int) > rgb[..., 0].astype(int) + 60) & (rgb[..., 1] > rgb[..., 2])
    assert green.sum() > 500 and not pixels[green].any()
    assert columns[0] > np.flatnonzero(green.any(0)).max(), "the colon starts right of the position box"
    cells = cv2.resize(pixels.astype(np.float32), (28, 28), interpolation=cv2.INTER_AREA) >= 0.9
    assert cells.tolist() == valid_region(rgb[None], 28, 28, edge_px=0)[0].tolist()


def test_specular_cells_hold_highlights_and_leave_plain_mucosa_scored():
    rgb = _model_rgb(CENTRE_C_FRAME)
    specular = specular_cells(rgb[None], 28, 28)[0]
    value = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 2].reshape(28, 8, 28, 8).max(axis=(1, 3))
    assert specular.sum() > 20, "this glossy frame has many highlights"
    near = cv2.dilate(value, np.ones((3, 3), np.uint8))  # brightest pixel in the cell or its 8 neighbours
    assert (near[specular] > 220).all(), "a flagged cell holds or borders a highlight"
    assert (value[specular] > 220).mean() > 0.7, "most hold one themselves"
    assert not specular[near < 200].any(), "a cell with no bright pixel around is never flagged"
    valid = valid_region(rgb[None], 28, 28)[0]
    assert scored_cells(rgb[None], 28, 28)[0].tolist() == valid.tolist(), "off by default"
    assert scored_cells(rgb[None], 28, 28, 0.1)[0].tolist() == (valid & ~specular).tolist()


def test_extractor_gives_a_28_by_28_map_of_the_two_stages():
    torch.set_num_threads(1)
    extractor = PatchFeatureExtractor()
    images = torch.from_numpy(normalize_uint8(_model_rgb(CENTRE_A_FRAME)[None]))
    maps = extractor(images)
    assert tuple(maps.shape) == (1, extractor.channels, 28, 28) and extractor.channels == 40 + 112
    assert torch.isfinite(maps).all() and maps.std() > 0
    with pytest.raises(InputError):
        PatchFeatureExtractor(layer="blocks.9")


def test_openvino_extractor_gives_the_torch_descriptors_on_real_frames():
    """The live site scorer's OpenVINO extractor (when the engine runs on OpenVINO) must give the descriptors
    the site threshold was calibrated on: the torch extractor's, on real PolypGen frames, batch 1 and 3."""
    from stream_monitor.site.patch_openvino import OpenVinoPatchExtractor

    rgb = np.stack([_model_rgb(path) for path in (CENTRE_A_FRAME, CENTRE_A_POLYP, CENTRE_C_FRAME)])
    images = torch.from_numpy(normalize_uint8(rgb))
    torch_extractor = PatchFeatureExtractor(None)
    compiled = OpenVinoPatchExtractor(torch_extractor, threads=1)
    expected = torch_extractor(images).numpy()
    assert compiled.layer == torch_extractor.layer and compiled.channels == expected.shape[1]
    np.testing.assert_allclose(compiled(images[:1]).numpy(), expected[:1], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(compiled(images).numpy(), expected, rtol=1e-4, atol=1e-3)
    with pytest.raises(InputError, match="compiled for"):
        compiled(torch.zeros(1, 3, 256, 256))
