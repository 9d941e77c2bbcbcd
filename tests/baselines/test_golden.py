"""Every baseline's scores against stored reference values (tests/golden/baselines_golden.npz).

pytorch-ood once shipped a "fix" that silently dropped a detector's AUROC to 50%, because no test held
reference values. These do: a change that moves any score by more than rtol 1e-9 fails here. If the
change is intended, regenerate with tests/golden/make_baseline_golden.py and say why in the commit.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from stream_monitor.baselines import list_baselines

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"
RTOL = 1e-9  # float64 throughout; only BLAS summation order may differ between machines
ATOL = 1e-12  # for scores that are exactly or nearly 0


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_baseline_golden", GOLDEN_DIR / "make_baseline_golden.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT = _load_script()


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN_DIR / "baselines_golden.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def current(golden) -> dict[str, np.ndarray]:
    inputs = {k.removeprefix("input/"): v for k, v in golden.items() if k.startswith("input/")}
    return SCRIPT.compute_scores(inputs)


def test_golden_file_covers_every_registered_baseline_and_case(golden) -> None:
    """A new baseline or case must come with regenerated reference values."""
    assert {name for name, _ in SCRIPT.CASES.values()} == set(list_baselines())
    stored = {k.removeprefix("score/") for k in golden if k.startswith("score/")}
    assert stored == set(SCRIPT.CASES) | set(SCRIPT.ODIN_CASES)


@pytest.mark.parametrize("case", sorted(set(SCRIPT.CASES) | set(SCRIPT.ODIN_CASES)))
def test_scores_match_golden(case: str, golden, current) -> None:
    expected = golden[f"score/{case}"]
    assert current[case].shape == expected.shape and current[case].dtype == np.float64
    np.testing.assert_allclose(current[case], expected, rtol=RTOL, atol=ATOL)

