"""Every registered baseline rejects unusable input with a clear InputError / NotFittedError."""

from __future__ import annotations

import numpy as np
import pytest

from stream_monitor.baselines import create_baseline, list_baselines
from stream_monitor.errors import InputError, NotFittedError

NAMES = list_baselines()


@pytest.fixture(scope="module")
def head() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": np.abs(rng.normal(size=(30, 6))), "y": np.arange(30) % 3,
            "w": rng.normal(size=(3, 6)), "b": rng.normal(size=3)}  # fmt: skip


def _fitted(name: str, h):
    return create_baseline(name).fit(h["x"], h["y"], h["w"], h["b"])


@pytest.mark.parametrize("name", NAMES)
def test_score_before_fit_raises_not_fitted(name: str, head) -> None:
    with pytest.raises(NotFittedError, match="not fitted"):
        create_baseline(name).score(head["x"])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (lambda x: x[0], "must be 2-D"),
        (lambda x: x[:, :, None], "must be 2-D"),
        (lambda x: x[:0], "must not be empty"),
        (lambda x: x[:, :5], r"width D=6; got shape \(30, 5\)"),
        (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x), "1 NaN or infinite"),
        (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 0, np.inf, x), "1 NaN or infinite"),
        (lambda x: np.full(x.shape, "a", dtype=object), "numeric"),
    ],
    ids=["1-D", "3-D", "empty", "width", "nan", "inf", "object"],
)
def test_score_rejects_bad_features(name: str, bad, match: str, head) -> None:
    with pytest.raises(InputError, match=match):
        _fitted(name, head).score(bad(head["x"]))


@pytest.mark.parametrize("name", NAMES)
def test_fit_rejects_bad_train_data(name: str, head) -> None:
    x, y, w, b = head["x"], head["y"], head["w"], head["b"]
    cases = [
        ((np.where(x > 1.0, np.nan, x), y, w, b), "NaN"),
        ((x[:0], y[:0], w, b), "must not be empty"),
        ((x, y, w[:, :5], b), r"weight must have width D=6"),
        ((x, y, w, b[:2]), r"bias must have shape \(3,\)"),
        ((x, y[:-1], w, b), r"labels must have shape \(30,\)"),
        ((x, y + 1, w, b), r"labels must lie in \[0, 3\)"),
        ((x, y - 1, w, b), r"labels must lie in \[0, 3\)"),
        ((x, y.astype(float), w, b), "labels must be integers"),
    ]
    for args, match in cases:
        with pytest.raises(InputError, match=match):
            create_baseline(name).fit(*args)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("energy", {"temperature": 0.0}, "temperature"),
        ("energy", {"temperature": "hot"}, "temperature must be a number"),
        ("entropy", {"min_prob": -1.0}, "min_prob"),
        ("gen", {"top_m": 0}, "top_m"),
        ("gen", {"gamma": float("nan")}, "gamma"),
        ("knn", {"k": 0}, "k must be"),
        ("neco", {"dim": 0}, "dim"),
        ("vim", {"dim": -1}, "dim"),
        ("ash", {"percentile": -5.0}, "percentile"),
        ("scale", {"percentile": 150.0}, "percentile"),
        ("react", {"threshold": float("inf")}, "threshold"),
        ("gradnorm", {"temperature": -1.0}, "temperature"),
    ],
)
def test_constructors_reject_bad_hyperparameters(name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        create_baseline(name, **kwargs)


def test_input_error_is_a_value_error() -> None:
    """Callers that catch ValueError (numpy/sklearn style) still catch ours."""
    with pytest.raises(ValueError):
        create_baseline("msp").fit(np.zeros(3), np.zeros(3, dtype=int), np.zeros((1, 3)), np.zeros(1))
