"""Calibrated evidence: conformal p-values of a score against a site's normal scores, and their fusion.

A p-value puts scores of different scales on one footing: p(s) = (1 + #{normal scores ≥ s}) / (n + 1)
is the share of the site's normal frames at least as unusual as this one. When the normal scores come
from frames the score was *not* fitted on (cross-fitting, see site_model.py), p is a valid conformal
p-value for a new normal frame: P(p ≤ α) ≤ α. Fusion rules (higher evidence = smaller p):

- `site`:   p_site alone (NERO is ignored after enrollment);
- `min`:    min(p_site, p_nero), Bonferroni-corrected (×2, capped at 1): fires when either evidence does;
- `fisher`: Fisher's combination −2 Σ log p against χ² with 4 degrees of freedom (independence assumed).

A frame is flagged when its fused p < α (= 1 − target normal share, 0.05 by default). For the live
pipeline, whose alerts compare a score with a threshold, `evidence_score` = log p / log α is > 1
exactly when p < α.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError

__all__ = ["FUSION_RULES", "evidence_fired", "evidence_score", "fuse", "p_values"]

FUSION_RULES = ("site", "min", "fisher")


def p_values(calibration: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(N,) float64 conformal p-values of `scores` (N,) against normal `calibration` scores (n,).
    NaN scores get p = NaN (nothing to judge)."""
    cal = np.sort(np.asarray(calibration, dtype=np.float64))
    if cal.ndim != 1 or len(cal) == 0 or not np.isfinite(cal).all():
        raise InputError("calibration scores must be a non-empty 1-D array of finite values")
    s = np.asarray(scores, dtype=np.float64)
    at_least = len(cal) - np.searchsorted(cal, s, side="left")
    p = (1.0 + at_least) / (len(cal) + 1.0)
    return np.where(np.isfinite(s), p, np.nan)


def _chi2_4_sf(x: np.ndarray) -> np.ndarray:
    # survival function of χ² with 4 degrees of freedom, closed form: e^{−x/2} (1 + x/2)
    half = np.asarray(x, dtype=np.float64) / 2.0
    return np.exp(-half) * (1.0 + half)


def fuse(p_site: np.ndarray, p_nero: np.ndarray | None, rule: str) -> np.ndarray:
    """(N,) fused p-values. A NaN p_site (no valid region) falls back to p_nero under `min` / `fisher`."""
    if rule not in FUSION_RULES:
        raise InputError(f"unknown fusion rule {rule!r}; known: {', '.join(FUSION_RULES)}")
    site = np.asarray(p_site, dtype=np.float64)
    if rule == "site" or p_nero is None:
        return site
    nero = np.asarray(p_nero, dtype=np.float64)
    if rule == "min":
        fused = np.minimum(1.0, 2.0 * np.fmin(site, nero))
        return np.where(np.isnan(site), nero, fused)
    statistic = -2.0 * (np.log(site) + np.log(nero))
    return np.where(np.isnan(site), nero, _chi2_4_sf(statistic))


def evidence_fired(p_site: np.ndarray, p_nero: np.ndarray | None, rule: str, alpha: float) -> list[tuple[str, ...]]:
    """For each frame, which evidence is itself below the level the rule needs: ('site',), ('nero',),
    both, or () — what the overlay and the result message show."""
    if not 0 < alpha < 1 or math.isnan(alpha):
        raise InputError(f"alpha must be in (0, 1), got {alpha}")
    level = alpha / 2.0 if rule == "min" else alpha
    site = np.asarray(p_site, dtype=np.float64) < level
    nero = (np.asarray(p_nero, dtype=np.float64) < level) if (p_nero is not None and rule != "site") else np.zeros_like(site)
    return [tuple(name for name, hit in (("site", s), ("nero", n)) if hit) for s, n in zip(site, nero)]


def evidence_score(p: np.ndarray, alpha: float) -> np.ndarray:
    """(N,) log p / log alpha: > 1 exactly when p < alpha (flagged); NaN p (nothing to judge) gives 0."""
    p = np.asarray(p, dtype=np.float64)
    return np.where(np.isnan(p), 0.0, np.log(np.clip(p, 1e-300, 1.0)) / np.log(alpha))
