"""NERO scores on fixed inputs must not drift: a change that moves them needs a deliberate
regeneration (tests/golden/make_nero_golden.py) with a reason in the commit — the lesson of
pytorch-ood #76→#81, where a "fix" silently dropped AUROC to 50% because no test held reference values."""

import importlib.util
from pathlib import Path

import numpy as np

GOLDEN_DIR = Path(__file__).parents[1] / "golden"


def load_maker():
    spec = importlib.util.spec_from_file_location("make_nero_golden", GOLDEN_DIR / "make_nero_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scores_match_the_golden_file():
    maker = load_maker()
    with np.load(GOLDEN_DIR / "nero_golden.npz") as stored:
        golden = dict(stored)
    inputs = {k: golden[k] for k in ("train", "labels", "test", "weight", "bias")}
    current = maker.golden_scores(inputs)
    assert set(current) == {k for k in golden if "__" in k}
    for key, value in current.items():
        np.testing.assert_allclose(value, golden[key], rtol=1e-10, err_msg=key)
