"""The diagnosis variants do what their names say: the colon crop removes the side panel of a real 1080p
centre-A frame, grey world gives every frame the same mean colon colour, and intra-image distances single
out the patch unlike the rest of its own frame."""

from __future__ import annotations

import numpy as np

from stream_monitor.data.images import read_image
from stream_monitor.evaluation.datasets import SHARED_DATA
from stream_monitor.evaluation.site_diagnosis import colon_crop, grey_world, intra_image_distances
from stream_monitor.evaluation.site_features import model_rgb
from stream_monitor.site.patch_memory import valid_pixels

CENTRE_A_FRAME = SHARED_DATA / "sequences" / "polypgen-negative" / "seq01_neg" / "0006_seq1_img6.jpg"
CENTRE_C_FRAME = SHARED_DATA / "sequences" / "polypgen-negative" / "seq19_neg" / "0001_seq19_img1.jpg"


def test_colon_crop_fills_the_image_with_the_colon():
    rgb = model_rgb(read_image(CENTRE_A_FRAME))  # the scope crop keeps the black side panel and green box
    assert valid_pixels(rgb).mean() < 0.7
    cropped = colon_crop(rgb)
    assert cropped.shape == rgb.shape and valid_pixels(cropped).mean() > 0.75


def test_grey_world_gives_two_recordings_the_same_mean_colon_colour():
    means = []
    for path in (CENTRE_A_FRAME, CENTRE_C_FRAME):
        out = grey_world(model_rgb(read_image(path)))
        means.append(out[valid_pixels(out).astype(bool)].mean(0))
    np.testing.assert_allclose(means[0], means[1], atol=6)


def test_intra_image_distance_is_highest_on_the_odd_patch_and_ignores_neighbours():
    rng = np.random.default_rng(0)
    maps = rng.normal(0, 0.1, size=(1, 4, 12, 12)).astype(np.float32)
    maps[0, :, 6, 6] += 5.0  # one patch unlike the rest of its frame
    valid = np.ones((1, 12, 12), bool)
    distances = intra_image_distances(maps, valid, radius=3)
    assert np.unravel_index(distances[0].argmax(), (12, 12)) == (6, 6)
    maps[0, :, 6, 7] = maps[0, :, 6, 6]  # a twin next to it is inside the neighbourhood: still odd
    assert intra_image_distances(maps, valid, radius=3)[0, 6, 6] > 4.0
