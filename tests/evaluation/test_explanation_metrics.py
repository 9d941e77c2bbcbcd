"""The three measures of evaluation/explanation_metrics.py on maps whose answers are known by hand,
and the select / report split of the masked sets (real masks from ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from stream_monitor.errors import InputError
from stream_monitor.evaluation.explanation_data import load_masked_set, read_mask, split_parts
from stream_monitor.evaluation.explanation_metrics import (
    auroc_inside,
    mass_inside,
    pointing_hit,
    score_map,
    summarise,
    to_grid_mask,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _square_mask(size: int = 224) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[50:100, 120:180] = True
    return mask


def test_pointing_game_hits_only_when_the_maximum_is_inside():
    mask = _square_mask()
    heat = np.zeros((224, 224))
    heat[70, 150] = 1.0
    assert pointing_hit(heat, mask)
    heat[10, 10] = 2.0
    assert not pointing_hit(heat, mask)


def test_a_constant_map_earns_nothing_in_the_pointing_game():
    """An empty explanation (all zeros) must not score a hit by luck of the argmax convention."""
    mask = _square_mask()
    assert not pointing_hit(np.zeros((224, 224)), mask)


def test_mass_inside_is_the_share_of_positive_mass():
    mask = _square_mask()
    heat = np.full((224, 224), -1.0)  # negative values are not mass
    heat[mask] = 3.0
    heat[0, :10] = 1.0
    expected = 3.0 * mask.sum() / (3.0 * mask.sum() + 10)
    assert mass_inside(heat, mask) == pytest.approx(expected)
    assert mass_inside(np.zeros((224, 224)), mask) == 0.0


def test_auroc_inside_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    mask = _square_mask()
    heat = np.round(rng.normal(size=(224, 224)) + mask, 1)  # coarse rounding: many ties
    assert auroc_inside(heat, mask) == pytest.approx(roc_auc_score(mask.ravel(), heat.ravel()), abs=1e-12)


def test_auroc_needs_pixels_inside_and_outside():
    with pytest.raises(InputError, match="undefined"):
        auroc_inside(np.ones((4, 4)), np.zeros((4, 4), bool))


def test_a_coarse_map_is_judged_on_the_same_grid_as_its_mask():
    """A 7x7 map hot in the cell over the mask points inside it once both are on the 224 grid."""
    mask = np.zeros((288, 384), bool)
    mask[0:80, 0:110] = True  # top-left corner of a CVC-sized frame
    heat = np.zeros((7, 7))
    heat[0, 0] = 1.0
    scores = score_map(heat, mask)
    assert scores.hit and scores.mass == 1.0 and scores.auroc > 0.75  # zero cells tie inside and out
    assert scores.mask_share == pytest.approx(to_grid_mask(mask).mean())
    summary = summarise([scores, score_map(heat[::-1, ::-1], mask)])  # hot in the far corner: a miss
    assert summary["pointing_game"] == 0.5 and summary["n"] == 2


def test_masked_sets_are_complete_and_split_by_group_without_overlap():
    for name, count in (("hyperkvasir-polyp", 200), ("cvc-clinicdb", 317)):
        items = load_masked_set(name, DATA)
        assert len(items) == count
        parts = split_parts(items)
        select = {i.group for i in parts["select"]}
        report = {i.group for i in parts["report"]}
        assert select and report and not select & report
        assert len(parts["select"]) + len(parts["report"]) == count
        assert split_parts(items) == parts  # seeded: the same split every run
        mask = read_mask(items[0].mask_path)
        assert mask.dtype == bool and 0 < mask.mean() < 1


def test_the_verdict_names_every_measure_where_a_candidate_does_not_beat_a_baseline():
    from stream_monitor.evaluation.explanation_run import losses_to_baselines

    def family(name, pointing, lift, auroc):
        parts = {"report": {"pointing_game": pointing, "mass_lift": lift, "auroc_inside": auroc}}
        return {"family": name, "measures": {"hyperkvasir-polyp": parts, "cvc-clinicdb": parts}}

    payload = {"results": [family("deviation heatmap (current live map)", 0.5, 2.0, 0.80),
                           family("centre prior (Gaussian)", 0.45, 3.0, 0.82),
                           family("patch map (ID patch memory, lit scope region)", 0.9, 9.0, 0.99),
                           family("candidate", 0.6, 3.0, 0.81)]}
    lost = losses_to_baselines(payload, "candidate")
    # ties lose; a better non-baseline map (the patch map here) is not a baseline
    assert sorted(lost) == sorted(f"{s} {m} ({b})" for s in ("hyperkvasir-polyp", "cvc-clinicdb")
                                  for m, b in (("mass lift 3 ≤ 3", "centre prior (Gaussian)"),
                                               ("AUROC 0.81 ≤ 0.82", "centre prior (Gaussian)")))
    assert losses_to_baselines({"results": payload["results"][:3]}, "patch map (ID patch memory, lit scope region)") == []
