"""Shared plumbing of the baseline detectors: input checks, the linear head, stable softmax maths.

Every detector scores penultimate features `a` (N×D) against a linear head `W` (C×D), `b` (C,); logits
are always `a @ W.T + b` in float64 so that all methods see the same numbers as NERO does.
"""

from __future__ import annotations

import abc
from typing import TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from stream_monitor.errors import InputError, NotFittedError

Float64Array = NDArray[np.float64]
_Detector = TypeVar("_Detector", bound="HeadDetector")


def as_float_matrix(x: ArrayLike, what: str = "features", width: int | None = None) -> Float64Array:
    """Return `x` as a finite, non-empty (N, D) float64 array, or raise `InputError` saying why.

    `width`, when given, is the required D (the fitted feature width, or the features' for a head).
    """
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be a numeric array: {exc}") from exc
    if arr.ndim != 2:
        raise InputError(f"{what} must be 2-D (N, D); got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{what} must not be empty; got shape {arr.shape}")
    if width is not None and arr.shape[1] != width:
        raise InputError(f"{what} must have width D={width}; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise InputError(f"{what} must be finite; found {bad} NaN or infinite value(s)")
    return arr


def as_head(weight: ArrayLike, bias: ArrayLike, width: int) -> tuple[Float64Array, Float64Array]:
    """Check a linear head: `weight` (C, D) with D = `width`, `bias` (C,); both finite float64."""
    w = as_float_matrix(weight, "weight", width=width)
    try:
        b = np.asarray(bias, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"bias must be a numeric array: {exc}") from exc
    if b.shape != (w.shape[0],):
        raise InputError(f"bias must have shape ({w.shape[0]},) to match weight {w.shape}; got {b.shape}")
    if not np.all(np.isfinite(b)):
        raise InputError("bias must be finite; found NaN or infinite value(s)")
    return w, b


def as_labels(labels: ArrayLike, n: int, n_classes: int) -> NDArray[np.int64]:
    """Check integer class labels: shape (n,), each in [0, n_classes)."""
    lab = np.asarray(labels)
    if lab.shape != (n,):
        raise InputError(f"labels must have shape ({n},) to match the features; got {lab.shape}")
    if lab.dtype.kind not in "iu":
        raise InputError(f"labels must be integers; got dtype {lab.dtype}")
    if lab.min() < 0 or lab.max() >= n_classes:
        raise InputError(
            f"labels must lie in [0, {n_classes}) for a head with C={n_classes}; "
            f"got range [{lab.min()}, {lab.max()}]"
        )
    return lab.astype(np.int64)


def _as_float(value: object, what: str) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number; got {value!r}") from None


def check_positive(value: float, what: str) -> float:
    """Return `value` as float if it is finite and > 0, else raise `InputError`."""
    v = _as_float(value, what)
    if not np.isfinite(v) or v <= 0:
        raise InputError(f"{what} must be a finite number > 0; got {value!r}")
    return v


def check_percentile(value: float, what: str = "percentile") -> float:
    """Return `value` as float if it lies in [0, 100], else raise `InputError`."""
    v = _as_float(value, what)
    if not 0.0 <= v <= 100.0:
        raise InputError(f"{what} must lie in [0, 100]; got {value!r}")
    return v


def logsumexp(x: Float64Array, axis: int = -1) -> Float64Array:
    """Numerically stable `log(sum(exp(x)))` along `axis` (shift by the max so exp never overflows)."""
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return np.squeeze(out, axis=axis)


def softmax(x: Float64Array, axis: int = -1) -> Float64Array:
    """Numerically stable softmax along `axis`."""
    z = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return z / np.sum(z, axis=axis, keepdims=True)


def linear_logits(features: Float64Array, weight: Float64Array, bias: Float64Array) -> Float64Array:
    """Logits `features @ weight.T + bias`: (N, D), (C, D), (C,) -> (N, C) float64."""
    return features @ weight.T + bias


class HeadDetector(abc.ABC):
    """Base of every baseline: `fit` checks and stores the head, `score` checks features and delegates.

    Subclasses set `name`, implement `_score(features)` (features already checked, (N, D) float64) and,
    when they learn something from the ID train set, `_fit_train(features, labels)`.
    """

    name: str = ""

    def __init__(self) -> None:
        self.weight_: Float64Array | None = None
        self.bias_: Float64Array | None = None

    @property
    def n_features(self) -> int:
        """D, the feature width the detector was fitted with."""
        return int(self._fitted_weight().shape[1])

    @property
    def n_classes(self) -> int:
        """C, the number of classes of the fitted head."""
        return int(self._fitted_weight().shape[0])

    def fit(
        self: _Detector, features: ArrayLike, labels: ArrayLike, weight: ArrayLike, bias: ArrayLike
    ) -> _Detector:
        """Fit on ID train features (N, D), labels (N,) in [0, C), head weight (C, D), bias (C,).

        Returns self.
        """
        feats = as_float_matrix(features, "features")
        w, b = as_head(weight, bias, width=feats.shape[1])
        lab = as_labels(labels, feats.shape[0], w.shape[0])
        self.weight_, self.bias_ = w, b
        self._fit_train(feats, lab)
        return self

    def score(self, features: ArrayLike) -> Float64Array:
        """OOD score of each row of `features` (N, D): (N,) float64, higher = more OOD."""
        feats = as_float_matrix(features, "features", width=self.n_features)
        return np.asarray(self._score(feats), dtype=np.float64)

    def head(self) -> tuple[Float64Array, Float64Array]:
        """The fitted head: weight (C, D) and bias (C,), float64. Raises `NotFittedError` before `fit`."""
        if self.weight_ is None or self.bias_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(...) before score(...)")
        return self.weight_, self.bias_

    def logits(self, features: Float64Array) -> Float64Array:
        """Logits of already-checked features with the fitted head: (N, D) -> (N, C) float64."""
        return linear_logits(features, *self.head())

    def _fitted_weight(self) -> Float64Array:
        return self.head()[0]

    def _fit_train(self, features: Float64Array, labels: NDArray[np.int64]) -> None:
        """Learn train-set statistics; logit-only detectors need none."""

    @abc.abstractmethod
    def _score(self, features: Float64Array) -> Float64Array:
        """(N, D) checked float64 features -> (N,) scores, higher = more OOD."""

    def __repr__(self) -> str:
        fitted = "fitted" if self.weight_ is not None else "not fitted"
        return f"{type(self).__name__}({fitted})"
