"""The domain-shift study's building blocks (evaluation/domain_shift.py, domain_shift_report.py): its
folds never put one sequence on two sides, its centres are those the data README names, its simulated
in-domain streams are what they say, and its selection rule picks by validation only."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from stream_monitor.evaluation import domain_shift as ds
from stream_monitor.evaluation.domain_shift_report import HK_DROP_LIMIT, select
from stream_monitor.evaluation.datasets import SHARED_DATA
from stream_monitor.site.drift import design

# ../shared/data/README.md: seq01, 03, 05, 07 are centre A; seq09, 11, 15 centre B; seq19, 21, 23 centre C.
README_CENTRES = {"A": {"seq01_neg", "seq03_neg", "seq05_neg", "seq07_neg"},
                  "B": {"seq09_neg", "seq11_neg", "seq15_neg"}, "C": {"seq19_neg", "seq21_neg", "seq23_neg"}}


def test_sequence_centres_are_read_from_the_manifest_as_the_data_readme_states():
    if not (SHARED_DATA / ds.MANIFEST).is_file():
        pytest.fail(f"{SHARED_DATA / ds.MANIFEST} not found: the test reads it")
    centres = ds.sequence_centres()
    for centre, names in README_CENTRES.items():
        assert {n for n, c in centres.items() if c == centre} == names


def test_centre_folds_split_by_sequence_and_evaluate_each_sequence_once():
    data = SimpleNamespace(polypgen=[SimpleNamespace(name=n) for names in README_CENTRES.values() for n in sorted(names)]
                           + [SimpleNamespace(name="seq13_neg")])  # centre unknown: never a site
    folds = ds.centre_folds(data)
    evaluated = []
    for key, (fit, hold, evaluate) in folds.items():
        centre = key.split(":")[0]
        parts = [{s.name for s in part} for part in (fit, hold, evaluate)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2]), key
        assert set().union(*parts) == README_CENTRES[centre]  # one centre per site, all of it used
        assert len(parts[1]) == len(parts[2]) == 1
        evaluated += [s.name for s in evaluate]
    assert sorted(evaluated) == sorted(set().union(*README_CENTRES.values()))


def test_simulated_in_domain_streams_have_the_length_and_class_runs_asked_for():
    over = np.arange(50) % 7 == 0
    classes = np.repeat([0, 1, 2], [20, 15, 15])
    rng = np.random.default_rng(0)
    shuffled = ds.id_streams(over, 3, 180, rng)
    assert [len(s) for s in shuffled] == [180] * 3 and all(s.sum() > 0 for s in shuffled)
    # Blocked: images come in runs of one class (≤ 20 long), so the stream's values repeat the per-class
    # pattern; with every image of class 1 over the threshold, its runs show up as runs of True.
    over_by_class = classes == 1
    (blocked,) = ds.id_streams(over_by_class, 1, 50, np.random.default_rng(1), blocked=classes)
    edges = np.flatnonzero(np.diff(blocked.astype(int)) != 0)
    assert blocked.sum() == 15 and len(edges) <= 2  # one contiguous run of the 15 class-1 images


def test_count_raises_is_zero_on_quiet_footage_and_positive_on_shifted_footage():
    d = design(0.05, ds.DRIFT_P1, ds.DRIFT_ARL0)
    assert ds.count_raises(np.zeros(3600, bool), d) == 0
    assert ds.count_raises(np.ones(600, bool), d) >= 1


def test_selection_picks_by_validation_within_the_hyperkvasir_cost_limit():
    def row(hk, select_auroc):
        return {"auroc_hk_id_vs_hk_polyp": hk, "select_auroc_holdback_vs_cvc_dev": select_auroc}

    means = {("m", "none"): row(0.90, 0.50),
             ("m", "cheap"): row(0.90 - HK_DROP_LIMIT / 2, 0.70),
             ("m", "costly"): row(0.90 - 2 * HK_DROP_LIMIT, 0.99),  # best on validation, but costs too much
             ("m", "weak"): row(0.90, 0.60)}
    assert select(means) == {"m": "cheap"}
