"""NERO's hyperparameters: one typed record, two presets (docs/NERO.md §12).

`parity` reproduces the reference code exactly; `robust` fixes what a production detector must fix
(ε = 0 division, k hard-coded whatever D is) and exposes the rest for ablation.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

REFERENCE_K = 175  # the reference code's k, tuned for ResNet-18's D = 512
STABILIZERS = ("none", "sign", "clamp")
LAMBDA_SPACES = ("raw", "pca")


@dataclass(frozen=True)
class NeroConfig:
    """Every NERO hyperparameter, with its unit and default.

    mode: "parity" or "robust" — which preset the other fields started from (recorded, not used).
    stabilizer: how a logit near 0 is kept from exploding the relevance: "none" (reference),
        "sign" (f + ε·sign f) or "clamp" (|f| ≥ ε).
    epsilon: ε of the stabilizer, in logit units.
    k: number of least-relevant neurons in ρ; when None, round(k_fraction · D).
    k_fraction: k as a share of the feature width D (robust default 175/512, the reference's share on ResNet-18).
    pca_components: PCA components; when None, floor(pca_fraction · D), clipped to the train rank N − 1.
    pca_fraction: the reference's 2/3 of D.
    centroids_per_class: 1 = class means (reference); > 1 = k-means centroids within each class.
    lambda_space: where λ's numerator is measured: "raw" (D+1 relevance, reference) or "pca" (the space
        the distance is measured in).
    use_distance, use_bias, use_rho: the three score terms, switchable for ablation.
    use_residual: multiply by the relevance residual — the share of a frame's centred relevance outside the
        PCA subspace of the training relevances (not in the paper; see docs/results/dev-benchmark).
    seed: seed of the k-means initialisation (only used when centroids_per_class > 1).
    """

    mode: str = "parity"
    stabilizer: str = "none"
    epsilon: float = 0.0
    k: int | None = REFERENCE_K
    k_fraction: float = REFERENCE_K / 512
    pca_components: int | None = None
    pca_fraction: float = 2 / 3
    centroids_per_class: int = 1
    lambda_space: str = "raw"
    use_distance: bool = True
    use_bias: bool = True
    use_rho: bool = True
    use_residual: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("parity", "robust"):
            raise InputError(f"mode must be 'parity' or 'robust', got {self.mode!r}")
        if self.stabilizer not in STABILIZERS:
            raise InputError(f"stabilizer must be one of {STABILIZERS}, got {self.stabilizer!r}")
        if self.epsilon < 0 or not math.isfinite(self.epsilon):
            raise InputError(f"epsilon must be a finite number ≥ 0, got {self.epsilon}")
        if self.stabilizer != "none" and self.epsilon == 0:
            raise InputError(f"stabilizer {self.stabilizer!r} needs epsilon > 0")
        if self.k is not None and self.k < 1:
            raise InputError(f"k must be ≥ 1, got {self.k}")
        if not 0 < self.k_fraction <= 1:
            raise InputError(f"k_fraction must be in (0, 1], got {self.k_fraction}")
        if self.pca_components is not None and self.pca_components < 1:
            raise InputError(f"pca_components must be ≥ 1, got {self.pca_components}")
        if not 0 < self.pca_fraction <= 1:
            raise InputError(f"pca_fraction must be in (0, 1], got {self.pca_fraction}")
        if self.centroids_per_class < 1:
            raise InputError(f"centroids_per_class must be ≥ 1, got {self.centroids_per_class}")
        if self.lambda_space not in LAMBDA_SPACES:
            raise InputError(f"lambda_space must be one of {LAMBDA_SPACES}, got {self.lambda_space!r}")
        if not (self.use_distance or self.use_bias or self.use_residual):
            raise InputError("at least one of use_distance, use_bias and use_residual must be on: the score would be constant")
        if self.use_residual and self.mode == "parity":
            raise InputError("use_residual is not part of the reference method; use mode='robust'")

    @classmethod
    def preset(cls, mode: str, **overrides: Any) -> "NeroConfig":
        """The `parity` or `robust` preset, with any field overridden by keyword."""
        if mode == "parity":
            base: dict[str, Any] = {}
        elif mode == "robust":
            base = {"stabilizer": "sign", "epsilon": 1e-6, "k": None}
        else:
            raise InputError(f"mode must be 'parity' or 'robust', got {mode!r}")
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise InputError(f"unknown NERO hyperparameter(s): {', '.join(sorted(unknown))}")
        return cls(**{"mode": mode, **base, **overrides})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "NeroConfig":
        """Rebuild from `to_dict()` output; unknown keys are an error, not silently ignored."""
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise InputError(f"unknown NERO hyperparameter(s): {', '.join(sorted(unknown))}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolve_k(self, n_features: int) -> int:
        """The k used for a feature width D; a k larger than D is an error, not a silent clip."""
        k = self.k if self.k is not None else max(1, round(self.k_fraction * n_features))
        if k > n_features:
            raise InputError(
                f"k = {k} least-relevant neurons, but the features have only D = {n_features}; "
                f"pass k ≤ {n_features} or k=None to use k_fraction"
            )
        return k

    def resolve_pca_components(self, n_features: int, n_samples: int) -> tuple[int, bool]:
        """(components, clipped): an explicit count must fit; the default is clipped to the train rank."""
        rank = min(n_samples - 1, n_features)
        if self.pca_components is not None:
            if self.pca_components > rank:
                raise InputError(
                    f"pca_components = {self.pca_components} exceeds what {n_samples} training samples "
                    f"of width {n_features} support (at most {rank}); add training images or set fewer "
                    f"(CLI: --set pca_components={max(1, rank)})"
                )
            return self.pca_components, False
        wanted = math.floor(self.pca_fraction * n_features)
        return max(1, min(wanted, rank)), wanted > rank
