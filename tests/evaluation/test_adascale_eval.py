"""AdaSCALE inside an evaluation: real images through the bundled model's gradient pass, scored A and L,
with validation metrics from the validation OOD images only."""

from __future__ import annotations

import numpy as np
from tests.training.test_train import _tiny

from stream_monitor import bundled
from stream_monitor.data.split import load_split
from stream_monitor.evaluation.adascale_eval import adascale_results
from stream_monitor.evaluation.datasets import DEFAULT_SPLIT, Source
from stream_monitor.evaluation.dev_benchmark import EvaluationInputs
from stream_monitor.models.registry import load_classifier


def test_adascale_results_score_every_set_and_validate_on_validation_ood(shared_data) -> None:
    model, _ = load_classifier(bundled.MODEL)
    split = _tiny(load_split(DEFAULT_SPLIT), {"train": 1, "val": 2})
    split.subsets["test"] = load_split(DEFAULT_SPLIT).subsets["test"][:3]
    polyps = sorted((shared_data / "hyperkvasir-lgi" / "polyp").glob("*.jpg"))
    inputs = EvaluationInputs(model, split, [Source("polyp", "files", files=tuple(polyps[:3]))],
                              {"polyp": polyps[3:6]})
    results = adascale_results(inputs, batch_size=4)
    assert [r.name for r in results] == ["adascale_a", "adascale_l"]
    for r in results:
        assert r.id_test_scores.shape == (3,) and r.ood_test_scores["polyp"].shape == (3,)
        assert np.all(np.isfinite(r.id_test_scores)) and r.validation is not None
        assert r.validation.n_id == 6 and r.validation.n_ood == 3
    assert not np.allclose(results[0].id_test_scores, results[1].id_test_scores)
