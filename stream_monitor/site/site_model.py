"""The site model: a patch memory of one site's normal footage with a threshold it sets itself.

Enrollment, from G groups of the site's normal frames (recordings, or contiguous blocks of one video):
  1. a k-center coreset of each group's valid patches (PatchMemory.fit);
  2. cross-fitting: every frame of group g is scored against the union of the OTHER groups' coresets,
     so its score is what a new normal frame would get — the calibration scores (n,);
  3. the memory used live is the union of all groups' coresets (a union of k-center coresets of parts
     covers the whole set within twice the parts' radius, so no second pass over all patches is needed).
The threshold is the conformal one: a frame is flagged when its p-value against the calibration scores
is < alpha. Cross-fitted scores come from a smaller memory than the live one, so they are, if anything,
higher than a new normal frame's score: the false-alert share on new normal footage stays ≤ alpha when
the footage resembles the enrolled footage (measured: docs/results/site-enrollment).

NERO's scores on the same enrolled frames calibrate NERO's p-value for fusion (calibration.py); NERO is
not fitted on them, so no cross-fitting is needed for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .calibration import FUSION_RULES, evidence_fired, fuse, p_values
from .patch_memory import PatchMemory, frame_score

__all__ = ["SiteModel", "SiteOptions", "SiteScores", "crossfit_scores", "enroll_site", "group_memories",
           "unlike_groups"]


@dataclass(frozen=True)
class SiteOptions:
    """coreset_fraction: share of each group's valid patches kept (≥ min_coreset, ≤ max_coreset each);
    top_k: patches averaged into a frame score; alpha: flagged share of normal frames aimed at;
    fusion: one of FUSION_RULES; backbone: 'imagenet' or 'bundled' (what the patches come from);
    specular_cover: cells with more than this share of specular-highlight pixels are neither remembered nor
    scored (patch_memory.scored_cells); None keeps them (artifacts enrolled before the option)."""

    coreset_fraction: float = 0.05
    min_coreset: int = 50
    max_coreset: int = 2000
    top_k: int = 10
    alpha: float = 0.05
    fusion: str = "fisher"  # chosen by leave-one-centre-out on PolypGen A, B, C (docs/results/site-enrollment)
    backbone: str = "imagenet"
    layer: str = "blocks.2+blocks.4"
    seed: int = 0
    # left out: chosen by leave-one-centre-out for 2 of the 3 PolypGen centres (docs/results/site-enrollment)
    specular_cover: float | None = 0.1

    def __post_init__(self) -> None:
        if self.fusion not in FUSION_RULES:
            raise InputError(f"unknown fusion rule {self.fusion!r}; known: {', '.join(FUSION_RULES)}")
        if not 0 < self.alpha < 1:
            raise InputError(f"alpha must be in (0, 1), got {self.alpha}")
        if not 0 < self.coreset_fraction <= 1:
            raise InputError(f"coreset_fraction must be in (0, 1], got {self.coreset_fraction}")
        if self.specular_cover is not None and not 0 <= self.specular_cover < 1:
            raise InputError(f"specular_cover must be in [0, 1) or None, got {self.specular_cover}")


def _valid_patches(maps: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return np.asarray(maps, np.float32).transpose(0, 2, 3, 1)[np.asarray(valid, bool)]


def group_memories(maps_by_group: list[np.ndarray], valid_by_group: list[np.ndarray],
                   options: SiteOptions) -> list[PatchMemory]:
    """One coreset memory per group from its valid patches; maps (n_g, C, h, w), valid (n_g, h, w)."""
    memories = []
    for index, (maps, valid) in enumerate(zip(maps_by_group, valid_by_group)):
        patches = _valid_patches(maps, valid)
        if len(patches) == 0:
            raise InputError(f"group {index} has no valid patch: every frame is dark or overlay")
        size = int(np.clip(round(options.coreset_fraction * len(patches)), options.min_coreset, options.max_coreset))
        memories.append(PatchMemory.fit(patches, size, seed=options.seed + index))
    return memories


def crossfit_scores(maps_by_group: list[np.ndarray], valid_by_group: list[np.ndarray],
                    memories: list[PatchMemory], top_k: int) -> np.ndarray:
    """(Σ n_g,) score of every frame against the union of the other groups' memories."""
    if len(memories) < 2:
        raise InputError("cross-fitting needs at least 2 groups of frames")
    scores = []
    for g, (maps, valid) in enumerate(zip(maps_by_group, valid_by_group)):
        others = PatchMemory(np.concatenate([m.bank for j, m in enumerate(memories) if j != g]))
        scores.append(frame_score(others.distances(maps), valid, top_k))
    return np.concatenate(scores)


def unlike_groups(calibration_by_group: list[np.ndarray], quantile: float = 0.95) -> list[int]:
    """Groups whose median cross-fitted score lies above the `quantile` of every other group's scores
    pooled: footage unlike the rest of the enrollment (another video chain, scope or light source).

    Such a group sets the threshold by how unlike it is, not by what a new normal frame of the site scores:
    on PolypGen centre A, enrolling one 1080p and one SD recording put the threshold above every polyp
    (docs/results/site-enrollment/diagnosis.md). Enrolling two or more recordings of each video chain
    avoids it."""
    scores = [np.asarray(g, np.float64)[np.isfinite(g)] for g in calibration_by_group]
    unlike = []
    for g, own in enumerate(scores):
        others = np.concatenate([o for j, o in enumerate(scores) if j != g])
        if len(own) and len(others) and np.median(own) > np.quantile(others, quantile):
            unlike.append(g)
    return unlike


@dataclass(frozen=True)
class SiteScores:
    """Per frame: site score (patch distance), p-values, fused p, flagged, evidence and distance maps."""

    site: np.ndarray
    p_site: np.ndarray
    p_nero: np.ndarray | None
    p_fused: np.ndarray
    flagged: np.ndarray
    evidence: list[tuple[str, ...]]
    distance_maps: np.ndarray


@dataclass
class SiteModel:
    memory: PatchMemory
    site_calibration: np.ndarray
    nero_calibration: np.ndarray | None
    options: SiteOptions
    info: dict = field(default_factory=dict)

    def score(self, maps: np.ndarray, valid: np.ndarray, nero: np.ndarray | None = None) -> SiteScores:
        """maps (B, C, h, w), valid (B, h, w), nero (B,) NERO scores or None (then NERO does not count)."""
        distance_maps = self.memory.distances(maps)
        site = frame_score(distance_maps, valid, self.options.top_k)
        p_site = p_values(self.site_calibration, site)
        p_nero = None
        if nero is not None and self.nero_calibration is not None and self.options.fusion != "site":
            p_nero = p_values(self.nero_calibration, nero)
        fused = fuse(p_site, p_nero, self.options.fusion)
        flagged = np.nan_to_num(fused, nan=1.0) < self.options.alpha
        return SiteScores(site, p_site, p_nero, fused, flagged,
                          evidence_fired(p_site, p_nero, self.options.fusion, self.options.alpha), distance_maps)

    @property
    def site_threshold(self) -> float:
        """The site score above which p_site < alpha (for gauges and logs; decisions use p-values)."""
        cal = np.sort(self.site_calibration)
        n = len(cal)
        # p < α ⇔ #{cal ≥ s} < α(n+1) − 1 ⇔ at most `allowed` calibration scores are ≥ s
        allowed = int(np.ceil(self.options.alpha * (n + 1) - 1)) - 1
        return float(cal[n - 1 - allowed]) if 0 <= allowed < n else float("inf")

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays = {**self.memory.to_arrays(), "site_calibration": np.asarray(self.site_calibration, np.float64)}
        if self.nero_calibration is not None:
            arrays["nero_calibration"] = np.asarray(self.nero_calibration, np.float64)
        meta = {"options": self.options.__dict__, "info": self.info}
        return arrays, json.loads(json.dumps(meta))

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict) -> SiteModel:
        try:
            # an artifact enrolled before specular_cover existed kept every valid cell
            options = SiteOptions(**{"specular_cover": None, **meta["options"]})
            return cls(PatchMemory.from_arrays(arrays), arrays["site_calibration"],
                       arrays.get("nero_calibration"), options, dict(meta.get("info", {})))
        except (KeyError, TypeError) as exc:
            raise InputError(f"not a site model: {exc}") from exc


def enroll_site(maps_by_group: list[np.ndarray], valid_by_group: list[np.ndarray],
                nero_by_group: list[np.ndarray] | None, options: SiteOptions = SiteOptions()) -> SiteModel:
    """Build a SiteModel from G ≥ 2 groups of normal frames (see the module docstring)."""
    if len(maps_by_group) < 2 or len(maps_by_group) != len(valid_by_group):
        raise InputError(f"enrollment needs ≥ 2 groups of frames with their valid regions, got {len(maps_by_group)}")
    memories = group_memories(maps_by_group, valid_by_group, options)
    calibration = crossfit_scores(maps_by_group, valid_by_group, memories, options.top_k)
    by_group = np.split(calibration, np.cumsum([len(m) for m in maps_by_group])[:-1])
    calibration = calibration[np.isfinite(calibration)]
    if len(calibration) < 20:
        raise InputError(f"only {len(calibration)} usable enrollment frames: need at least 20 to set a threshold "
                         f"at alpha = {options.alpha} (aim for minutes of footage)")
    memory = PatchMemory(np.concatenate([m.bank for m in memories]))
    nero = np.concatenate(nero_by_group) if nero_by_group is not None else None
    info = {"groups": len(maps_by_group), "frames": int(sum(len(m) for m in maps_by_group)),
            "memory_size": memory.size, "unlike_groups": unlike_groups(by_group),
            "group_median_scores": [round(float(np.nanmedian(g)), 3) if np.isfinite(g).any() else None for g in by_group]}
    return SiteModel(memory, calibration, nero, options, info)
