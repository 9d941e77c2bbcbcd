"""The diagnosis variants do what their names say: the colon crop removes the side panel of a real 1080p
centre-A frame, grey world gives every frame the same mean colon colour, and intra-image distances single
out the patch unlike the rest of its own frame, local contrast ignores a shift of the whole frame and the
threshold sweep's leave-one-centre-out pick never looks at the centre it reports."""

from __future__ import annotations

import numpy as np

from stream_monitor.data.images import read_image
from stream_monitor.evaluation.datasets import SHARED_DATA
from stream_monitor.evaluation.site_diagnosis import (
    choose_threshold_rule,
    colon_crop,
    grey_world,
    intra_image_distances,
    local_contrast_score,
)
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


def test_local_contrast_ignores_a_shift_of_the_whole_frame_but_not_a_local_rise():
    rng = np.random.default_rng(0)
    maps = rng.uniform(40, 50, size=(1, 8, 8))
    valid = np.ones((1, 8, 8), bool)
    valid[0, 0] = False  # an overlay row: neither the median nor the top counts it
    maps[0, 0] = 1000.0
    base = local_contrast_score(maps, valid, top_k=3)
    np.testing.assert_allclose(local_contrast_score(maps + 20.0, valid, top_k=3), base)  # another light source
    raised = maps.copy()
    raised[0, 4:6, 4:6] += 30.0  # a polyp-sized rise
    assert local_contrast_score(raised, valid, top_k=3)[0] > base[0] + 20
    assert np.isnan(local_contrast_score(maps, np.zeros_like(valid), top_k=3)[0])


def _result(variant, centre, rates):
    return {"variant": variant, "centre": centre, "backbone": "imagenet", "at_quantile": rates}


def test_threshold_rule_is_picked_on_the_other_centres_only():
    # "good" meets the false-alert limit on A and B; "bad" does not. C, the reported centre, prefers "bad".
    results = {
        "good|A|imagenet": _result("good", "A", {"0.9": [0.05, 0.30]}),
        "good|B|imagenet": _result("good", "B", {"0.9": [0.08, 0.20]}),
        "good|C|imagenet": _result("good", "C", {"0.9": [0.50, 0.10]}),
        "bad|A|imagenet": _result("bad", "A", {"0.9": [0.20, 0.90]}),
        "bad|B|imagenet": _result("bad", "B", {"0.9": [0.02, 0.90]}),
        "bad|C|imagenet": _result("bad", "C", {"0.9": [0.00, 0.95]}),
    }
    assert choose_threshold_rule(results, "C") == ("good", "imagenet", "0.9")
    results["good|A|imagenet"]["at_quantile"]["0.9"][0] = 0.11
    assert choose_threshold_rule(results, "C") is None
