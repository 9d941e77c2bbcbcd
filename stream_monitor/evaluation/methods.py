"""The methods an evaluation compares: NERO (parity, robust, ablations, selection candidates) and every
baseline, all behind one contract — `fit(features, labels, weight, bias)`, `score(features)`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..baselines import BASELINES, create_baseline
from ..nero import NeroDetector

# Baselines as in docs/NERO.md §8 plus KNN, ASH, SCALE, GEN; ODIN needs images and is run separately.
BASELINE_ORDER = ("msp", "energy", "entropy", "max_logit", "gen", "mahalanobis", "vim", "neco", "knn",
                  "react", "ash", "scale", "gradnorm")

TERMS: dict[str, dict[str, bool]] = {
    "(d+λb)·ρ": {},
    "d·ρ": {"use_bias": False},
    "d+λb": {"use_rho": False},
    "d": {"use_bias": False, "use_rho": False},
    "λb·ρ": {"use_distance": False},
    "(d+λb)·ρ·r": {"use_residual": True},
    "d·r": {"use_bias": False, "use_rho": False, "use_residual": True},
    "r": {"use_distance": False, "use_bias": False, "use_rho": False, "use_residual": True},
}


@dataclass(frozen=True)
class Method:
    """A named, unfitted detector factory. `options` are NeroDetector keywords for the NERO family."""

    name: str
    family: str
    build: Callable[[], Any]
    options: dict[str, Any] = field(default_factory=dict)
    block_stats: bool = False  # reads `[feature | block statistics]` (baselines/block_stats.py)


def nero_method(name: str, **options: Any) -> Method:
    return Method(name, "nero", lambda: NeroDetector(**options), dict(options))


def baseline_methods() -> list[Method]:
    names = [n for n in BASELINE_ORDER if n in BASELINES] + sorted(set(BASELINES) - set(BASELINE_ORDER))
    return [Method(n, "baseline", lambda n=n: create_baseline(n)) for n in names]


def headline_methods(fusions: bool = True) -> list[Method]:
    """NERO as the paper codes it, NERO robust, every baseline and (unless `fusions=False`: each fits its
    components three times) the NERO-based fusions: the main table."""
    return ([nero_method("nero_parity", mode="parity"), nero_method("nero_robust", mode="robust")] + baseline_methods()
            + (fusion_methods() if fusions else []))


def fusion_methods() -> list[Method]:
    """NERO's relevance residual (the shipped default's score) z-fused with feature-space evidence, NERO's
    relevance distance in a whitened space, and one fusion without NERO as a control (see fusion.py)."""
    from ..baselines.fusion import (
        BLOCK_STATS,
        FUSION_COMBOS,
        WHITENED_DISTANCE,
        fusion_factories,
        fusion_name,
        needs_block_stats,
    )

    factories = fusion_factories()
    methods = [Method(WHITENED_DISTANCE, "fusion", factories[WHITENED_DISTANCE], {"components": 50}),
               Method(BLOCK_STATS, "baseline", factories[BLOCK_STATS], {"block": "blocks.5"}, block_stats=True)]
    for combo in FUSION_COMBOS:
        name = fusion_name(combo)
        methods.append(Method(name, "fusion", factories[name], {"components": list(combo)},
                              block_stats=needs_block_stats(name)))
    return methods


def ablation_methods(n_train: int | None = None) -> list[Method]:
    """One factor at a time from the robust preset: score terms, ε, k, centroids per class, λ's space."""
    methods = [nero_method(f"terms {label}", mode="robust", **flags) for label, flags in TERMS.items()]
    methods += [
        nero_method("ε = 0 (reference)", mode="robust", stabilizer="none", epsilon=0.0),
        nero_method("ε = 1e-6 sign", mode="robust", stabilizer="sign", epsilon=1e-6),
        nero_method("ε = 1e-3 sign", mode="robust", stabilizer="sign", epsilon=1e-3),
        nero_method("ε = 1e-2 clamp", mode="robust", stabilizer="clamp", epsilon=1e-2),
    ]
    methods += [nero_method(f"k = {f:.3g}·D", mode="robust", k_fraction=f) for f in (0.1, 0.25, 175 / 512, 0.5, 0.75)]
    methods += [nero_method(f"{m} centroid(s)/class", mode="robust", centroids_per_class=m) for m in (1, 2, 4, 8)]
    methods += [nero_method(f"λ in {s} space", mode="robust", lambda_space=s) for s in ("raw", "pca")]
    methods += [nero_method(f"{p} PCA components", mode="robust", pca_components=p)
                for p in (50, 100, 200) if n_train is None or p <= n_train - 1]
    return methods


def selection_candidates(n_train: int | None = None) -> list[Method]:
    """The NERO configurations the default is chosen from (robust base): score terms × PCA components ×
    centroids per class, plus k and ε for the paper's terms. ε and k barely move the paper's score on the
    dev benchmark (see the ablation), so the grid spends its size on terms and subspace instead."""
    methods = []
    for terms, components, per_class in itertools.product(TERMS, (None, 50, 100, 200), (1, 4)):
        if terms == "r" and per_class != 1:
            continue  # the residual alone has no centroids: these would duplicate
        if components is not None and n_train is not None and components > n_train - 1:
            continue  # more components than the training set spans: not a valid configuration here
        options = dict(mode="robust", pca_components=components, centroids_per_class=per_class, **TERMS[terms])
        label = f"{terms}, PCA {components or 'auto'}, {per_class}/class"
        methods.append(nero_method(label, **options))
    for k_fraction, epsilon in itertools.product((0.1, 0.5), (1e-6, 1e-3)):
        options = dict(mode="robust", k_fraction=k_fraction, epsilon=epsilon)
        methods.append(nero_method(f"(d+λb)·ρ, k={k_fraction:g}·D, ε={epsilon:g}", **options))
    return methods
