"""Serve any registered detector live: one artifact format, one engine path.

An *alert detector* is any fitted detector of the evaluation's main table — a baseline of the registry
(`neco`, `knn`, `residual`, ...) or a fusion (`fusion z(nero-r)+z(neco)`, `nero_whitened_distance`) —
plus its calibrated threshold. It travels inside the NERO detector artifact, beside NERO's own arrays
(the same way an enrolled site model does, site/artifact.py): arrays under the `alert__` prefix, its
name, constructor options, fitted scalars and calibration under the metadata key `alert_detector`. The
file stays a NERO artifact for every tool, and NERO keeps producing the explanation (score parts,
neurons, heatmap) for every frame, whatever drives the alert.

    det = fit_alert_detector("neco", train_features, train_labels, weight, bias, val_features)
    save_with_alert_detector("neco.npz", nero_detector, det)
    alert = load_alert_detector("neco.npz")          # None for a plain NERO artifact
    scores = alert.score(features)                   # (N,) float64, flag where scores > alert.threshold

State is captured generically: by the registry's convention a detector's constructor options are its
public attributes and everything `fit` learns ends in `_`. Arrays, scalars, lists of scalars, PCA tuples,
nested detectors (a fusion's components) and NERO detectors are stored; anything else is refused when
saving, not discovered when loading.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import artifact
from ..calibration import Calibration, calibrate_threshold
from ..errors import ArtifactError, InputError
from ..models.block_stats import STATS_BLOCK
from ..nero import NeroDetector
from ..nero.functional import PCA
from . import BASELINES, create_baseline
from .fusion import create_fusion, fit_detector, fusion_factories, needs_block_stats

__all__ = ["AlertDetector", "fit_alert_detector", "load_alert_detector", "new_detector", "save_with_alert_detector",
           "servable_detectors"]

_PREFIX = "alert__"
_META_KEY = "alert_detector"
_SCALARS = (bool, int, float, str, type(None))


def servable_detectors() -> list[str]:
    """Every name `fit_alert_detector` accepts: the baseline registry and the fusions."""
    return sorted(BASELINES) + sorted(fusion_factories())


def new_detector(name: str, options: dict[str, Any]) -> Any:
    """A new, unfitted servable detector; bad names or options raise `InputError` (fusion options:
    fusion.create_fusion)."""
    if name in BASELINES:
        return create_baseline(name, **options)
    if name in fusion_factories():
        return create_fusion(name, options)
    raise InputError(f"unknown detector {name!r}; servable: {', '.join(servable_detectors())}")


@dataclass
class AlertDetector:
    """A fitted detector of any registered kind and the threshold its alert uses."""

    name: str
    options: dict[str, Any]
    detector: Any
    calibration: Calibration
    fit_changes: list[str] = field(default_factory=list)  # train copies after these capture changes ([]: none)

    @property
    def threshold(self) -> float:
        return self.calibration.threshold

    @property
    def label(self) -> str:
        """The name with its options as `fit --alert-option` spells them, for reports:
        "fusion z(neco)+z(bstats) bstats.shrinkage=0.3"."""
        if self.name in fusion_factories():
            flat = [f"{component}.{key}={json.dumps(value)}" for component, opts in self.options.items()
                    for key, value in opts.items()]
        else:
            flat = [f"{key}={json.dumps(value)}" for key, value in self.options.items()]
        return " ".join([self.name, *flat])

    @property
    def needs_block_stats(self) -> bool:
        """Whether `score` reads `[feature | block statistics]` (N, D + S) instead of the feature (N, D):
        the engine then also returns block STATS_BLOCK's statistics (models/block_stats.py)."""
        return needs_block_stats(self.name)

    def score(self, features: np.ndarray) -> np.ndarray:
        """(N, D) pooled penultimate features, or (N, D + S) extended ones where `needs_block_stats`
        → (N,) float64 scores, higher = more OOD."""
        return np.asarray(self.detector.score(np.asarray(features, np.float64)), dtype=np.float64)

    def score_with_parts(self, features: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """`score(features)` and what it is made of: for a z-score fusion, each component's standardised
        score by component name (they sum to the score exactly); for any other detector, no parts."""
        features = np.asarray(features, np.float64)
        component_z = getattr(self.detector, "component_z", None)
        if component_z is None:
            return self.score(features), {}
        z = component_z(features)
        return z.sum(axis=1), {name: z[:, k] for k, name in enumerate(self.detector.names)}


def fit_alert_detector(name: str, train_features: np.ndarray, train_labels: np.ndarray, weight: np.ndarray,
                       bias: np.ndarray, validation_features: np.ndarray, target_tpr: float = 0.95,
                       groups: np.ndarray | None = None, fit_changes: Sequence[str] = (),
                       **options: Any) -> AlertDetector:
    """Fit `name` on ID train features and calibrate its threshold on ID validation features (the same
    rule as NERO's: `target_tpr` of the validation frames score at or below it; calibration.py).

    When the train set holds transformed copies of the train images (`fit_changes`: the capture changes
    applied), `groups` names each row's source image; a fusion then standardises out of fold by source
    (fusion.ZScoreFusion), and single detectors, which keep no out-of-fold statistics, ignore it."""
    detector = fit_detector(new_detector(name, options), train_features, train_labels, weight, bias, groups)
    calibration = calibrate_threshold(detector.score(np.asarray(validation_features, np.float64)), target_tpr)
    return AlertDetector(name, dict(options), detector, calibration, list(fit_changes))


# ------------------------------------------------------------------ state capture
def _capture(obj: Any, prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Fitted attributes of `obj` (names ending in `_`): arrays go to `arrays` under `prefix`, the rest is
    returned as JSON-able metadata that says how to rebuild each."""
    if isinstance(obj, NeroDetector):
        nero_arrays, nero_meta = obj.to_state()
        arrays.update({f"{prefix}{k}": v for k, v in nero_arrays.items()})
        return {"nero": nero_meta, "prefix": prefix}
    fitted: dict[str, Any] = {}
    for key, value in vars(obj).items():
        if key.endswith("_"):
            fitted[key] = _capture_value(obj, key, value, f"{prefix}{key}", arrays)
    return {"fitted": fitted}


def _capture_value(owner: Any, key: str, value: Any, name: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    if isinstance(value, np.ndarray):
        arrays[name] = value
        return {"array": name}
    if isinstance(value, np.generic):
        return {"scalar": value.item()}
    if isinstance(value, _SCALARS):
        return {"scalar": value}
    if isinstance(value, PCA):
        return {"pca": [_capture_value(owner, key, part, f"{name}.{i}", arrays) for i, part in enumerate(value)]}
    if isinstance(value, list) and all(isinstance(v, _SCALARS + (np.generic,)) for v in value):
        return {"scalar_list": [v.item() if isinstance(v, np.generic) else v for v in value]}
    if isinstance(value, NeroDetector):
        return {"object": _capture(value, f"{name}.", arrays)}
    factories = getattr(owner, "components", None)
    if isinstance(value, list) and isinstance(factories, list) and len(factories) == len(value):
        # a fusion's fitted components, rebuilt from the fusion's own factories when loading
        return {"components": [_capture(v, f"{name}.{i}.", arrays) for i, v in enumerate(value)]}
    raise InputError(f"cannot serve {type(owner).__name__}.{key}: a fitted {type(value).__name__} is not "
                     "storable without pickle")


def _restore(obj: Any, state: dict[str, Any], arrays: dict[str, np.ndarray], source: Any) -> Any:
    """`obj` (new, unfitted, same kind) with the state `_capture` described; NERO is rebuilt whole."""
    if "nero" in state:
        prefix = state["prefix"]
        own = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        return NeroDetector.from_state(own, state["nero"], source)
    for key, spec in state["fitted"].items():
        setattr(obj, key, _restore_value(obj, key, spec, arrays, source))
    return obj


def _restore_value(owner: Any, key: str, spec: dict[str, Any], arrays: dict[str, np.ndarray], source: Any) -> Any:
    if "array" in spec:
        if spec["array"] not in arrays:
            raise ArtifactError(f"{source}: the alert detector's array {spec['array']!r} is missing")
        return arrays[spec["array"]]
    if "scalar" in spec:
        return spec["scalar"]
    if "scalar_list" in spec:
        return list(spec["scalar_list"])
    if "pca" in spec:
        return PCA(*(_restore_value(owner, key, part, arrays, source) for part in spec["pca"]))
    if "object" in spec:
        return _restore(None, spec["object"], arrays, source)
    if "components" in spec:
        factories = getattr(owner, "components", None)
        if not isinstance(factories, list) or len(factories) != len(spec["components"]):
            raise ArtifactError(f"{source}: {type(owner).__name__}.{key} holds {len(spec['components'])} "
                                "components this detector does not have")
        return [_restore(factory(), state, arrays, source) for factory, state in zip(factories, spec["components"])]
    raise ArtifactError(f"{source}: unreadable alert detector state for {type(owner).__name__}.{key}")


# ------------------------------------------------------------------ the artifact
def save_with_alert_detector(path: str | os.PathLike, nero: NeroDetector, alert: AlertDetector) -> Path:
    """Write NERO (the explanation) and `alert` (what raises the alert) to one artifact, atomically."""
    alert_arrays: dict[str, np.ndarray] = {}
    state = _capture(alert.detector, "", alert_arrays)
    arrays, meta = nero.to_state()
    arrays.update({_PREFIX + name: value for name, value in alert_arrays.items()})
    meta[_META_KEY] = {"name": alert.name, "options": alert.options, "state": state,
                       "calibration": alert.calibration.to_dict(), "fit_changes": list(alert.fit_changes)}
    if alert.needs_block_stats:  # which block's statistics it was fitted on: a later default must not mismatch
        meta[_META_KEY]["stats_block"] = STATS_BLOCK
    return artifact.write_artifact(path, arrays, meta)


def load_alert_detector(path: str | os.PathLike) -> AlertDetector | None:
    """The alert detector stored in a detector artifact, or None when it holds none (checksums verified)."""
    arrays, meta = artifact.read_artifact(path)
    if _META_KEY not in meta:
        return None
    spec = meta[_META_KEY]
    if needs_block_stats(spec.get("name", "")) and spec.get("stats_block") != STATS_BLOCK:
        raise ArtifactError(f"{path}: its alert detector was fitted on the statistics of block "
                            f"{spec.get('stats_block')}, this version computes block {STATS_BLOCK}; re-fit it with "
                            "`stream-monitor fit --alert-detector NAME`")
    stored = {name[len(_PREFIX):]: value for name, value in arrays.items() if name.startswith(_PREFIX)}
    try:
        detector = new_detector(spec["name"], dict(spec.get("options", {})))
        detector = _restore(detector, spec["state"], stored, path)
        calibration = Calibration.from_dict(spec["calibration"])
    except (InputError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}: its alert detector is unreadable ({exc}); re-fit it with "
                            "`stream-monitor fit --alert-detector NAME`") from exc
    return AlertDetector(spec["name"], dict(spec.get("options", {})), detector, calibration,
                         list(spec.get("fit_changes", [])))
