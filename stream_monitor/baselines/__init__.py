"""Baseline OOD detectors that NERO is compared against (NERO.md §8), plus KNN, ASH, SCALE and GEN, and
the recent feature/head scores Residual, RMDS, fDBD, NNGuide and NCI (`recent.py`).

Every detector follows one contract, so that evaluation code can loop over all of them (and NERO):

    det = create_baseline("energy", temperature=1.0)
    det.fit(train_features, train_labels, head_weight, head_bias)   # (N, D), (N,), (C, D), (C,)
    scores = det.score(test_features)                               # (M,) float64, higher = more OOD

The maths of each method is a module-level pure function on float64 arrays (e.g. `energy_score`), reused
across detectors. ODIN needs the torch model and the images, so it is the function `odin_score`, not a
registry entry. AdaSCALE (A and L) needs a second forward pass on a perturbed image, so it is the
function `adascale_scores` in `adascale.py`, run like ODIN.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from ._common import HeadDetector
from .activation_shaping import (
    ASH,
    SCALE,
    ReAct,
    ash_s,
    react_energy_score,
    react_threshold,
    scale_shape,
)
from .feature_based import (
    KNN,
    NECO,
    Mahalanobis,
    ViM,
    knn_score,
    mahalanobis_score,
    neco_score,
    vim_default_dim,
    vim_score,
)
from .gradient import IMAGENET_STD, GradNorm, gradnorm_score, odin_score
from .logit_based import (
    GEN,
    MSP,
    Energy,
    Entropy,
    MaxLogit,
    energy_score,
    entropy_score,
    gen_score,
    max_logit_score,
    msp_score,
)
from .recent import (
    FDBD,
    NCI,
    RMDS,
    NNGuide,
    Residual,
    fdbd_score,
    nci_score,
    nnguide_score,
    rmds_score,
)

BASELINES: dict[str, type[HeadDetector]] = {
    cls.name: cls
    for cls in (MSP, Energy, Entropy, MaxLogit, GEN, Mahalanobis, ViM, NECO, KNN, ReAct, ASH, SCALE, GradNorm,
                Residual, RMDS, FDBD, NNGuide, NCI)
}
"""Registry name -> detector class; each class's `name` attribute is its key."""


def list_baselines() -> list[str]:
    """Registry names of all fit/score baselines, sorted."""
    return sorted(BASELINES)


def create_baseline(name: str, **kwargs: Any) -> HeadDetector:
    """A new, unfitted detector by registry name, e.g. `create_baseline("knn", k=50)`.

    Raises `InputError` for an unknown name (listing the known ones) or an unknown keyword argument.
    """
    try:
        cls = BASELINES[name]
    except KeyError:
        raise InputError(f"unknown baseline {name!r}; known: {', '.join(list_baselines())}") from None
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise InputError(f"bad arguments for baseline {name!r}: {exc}") from exc


__all__ = [
    "ASH",
    "FDBD",
    "NCI",
    "NNGuide",
    "RMDS",
    "Residual",
    "fdbd_score",
    "nci_score",
    "nnguide_score",
    "rmds_score",
    "BASELINES",
    "GEN",
    "KNN",
    "MSP",
    "NECO",
    "SCALE",
    "Energy",
    "Entropy",
    "GradNorm",
    "HeadDetector",
    "IMAGENET_STD",
    "Mahalanobis",
    "MaxLogit",
    "ReAct",
    "ViM",
    "ash_s",
    "create_baseline",
    "energy_score",
    "entropy_score",
    "gen_score",
    "gradnorm_score",
    "knn_score",
    "list_baselines",
    "mahalanobis_score",
    "max_logit_score",
    "msp_score",
    "neco_score",
    "odin_score",
    "react_energy_score",
    "react_threshold",
    "scale_shape",
    "vim_default_dim",
    "vim_score",
]
