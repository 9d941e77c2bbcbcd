"""Enrollment warns when one recording is unlike the rest: on PolypGen centre A, a 1080p recording enrolled
with an SD one (another video chain) is flagged, and the threshold it sets sits far above what the two
recordings of centre C (one chain) set (docs/results/site-enrollment/diagnosis.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stream_monitor.data.images import list_images, read_image
from stream_monitor.evaluation.datasets import SHARED_DATA
from stream_monitor.evaluation.site_features import model_rgb
from stream_monitor.preprocess import normalize_uint8
from stream_monitor.site.patch_memory import PatchFeatureExtractor, valid_region
from stream_monitor.site.site_model import enroll_site, unlike_groups

pytestmark = pytest.mark.slow  # extracts the patches of about 80 real 1080p / SD frames (about 1 min)

NEGATIVE = SHARED_DATA / "sequences" / "polypgen-negative"


@pytest.fixture(scope="module")
def patches():
    torch.set_num_threads(1)
    extractor = PatchFeatureExtractor()
    out = {}
    for seq in ("seq03", "seq05", "seq19", "seq21"):
        files = list_images(NEGATIVE / f"{seq}_neg")
        assert files, f"development data missing under {NEGATIVE}"
        rgb = np.stack([model_rgb(read_image(f)) for f in files[::2]])
        maps = extractor(torch.from_numpy(normalize_uint8(rgb))).numpy()
        out[seq] = (maps, valid_region(rgb, *maps.shape[-2:]))
    return out


def test_two_video_chains_are_reported_and_one_chain_is_not(patches):
    chains = enroll_site([patches["seq03"][0], patches["seq05"][0]], [patches["seq03"][1], patches["seq05"][1]], None)
    one_chain = enroll_site([patches["seq19"][0], patches["seq21"][0]], [patches["seq19"][1], patches["seq21"][1]], None)
    assert chains.info["unlike_groups"] == [1], "the SD recording, scored against the 1080p one"
    assert one_chain.info["unlike_groups"] == []
    assert len(chains.info["group_median_scores"]) == 2
    # what the warning is about: the mixed enrollment's threshold is set by the chain difference
    assert chains.site_threshold > 1.2 * one_chain.site_threshold


def test_unlike_groups_compares_each_median_with_the_others_pooled():
    rng = np.random.default_rng(0)
    same = [rng.normal(50, 2, 40) for _ in range(3)]
    assert unlike_groups(same) == []
    assert unlike_groups([*same, rng.normal(70, 2, 40)]) == [3]
    assert unlike_groups([np.array([np.nan, 50.0, 51.0, 52.0]), np.array([50.0, 51.0, 52.0, np.nan])]) == [], "NaN ignored"
