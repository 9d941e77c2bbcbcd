"""Fit a NERO detector on ID training features and calibrate its threshold on ID validation.

The artifact written holds every fitted array, the threshold at the target ID TPR, the class names and
the hashes of the model and its head, so that the live monitor refuses it for any other model.

examples:
  stream-monitor fit --out my_nero.npz                       # bundled model, committed split, default config
  stream-monitor fit --model runs/resnet18.pt --split my_split.json --mode parity --out resnet_nero.npz
  stream-monitor fit --set centroids_per_class=4 --set use_bias=false --out nero_k4.npz
  stream-monitor fit --model runs/convnext.pt --id-train data/train --id-val data/val --out convnext_nero.npz
  stream-monitor fit --model my_model.pt2 --id-dir data/all --split-seed 0 --out nero.npz   # torch.export program
  stream-monitor fit --alert-detector neco --out neco.npz                  # NECO raises the alert, NERO explains
  stream-monitor fit --alert-detector "fusion z(nero-r)+z(neco)" --out fused.npz
  stream-monitor fit --alert-detector "fusion z(neco)+z(bstats)" --calibrate-over capture-chain --out live.npz
  stream-monitor fit --alert-detector "fusion z(neco)+z(bstats)" --alert-option bstats.shrinkage=0.3 \\
      --fit-over capture-chain --calibrate-over capture-chain --out live.npz   # how the bundled detector is built

--calibrate-over capture-chain places the alerting threshold so that the ID validation frames stay at the
target rate after every change a capture chain makes (evaluation/benign_changes.py: JPEG, H.264, a 1080p
capture, 1-3 % crop or shift, brightness and gamma +-10 %), not only as they were stored: the false-alert
rate promised on clean frames then also holds on captured ones, at the price of a higher threshold.

--fit-over capture-chain fits the alerting detector on the ID train images as stored AND on a copy of each after
every one of those changes (15 × the train set; each copy keeps its image's class, and a fusion standardises out
of fold by source image). The detector then learns what a capture chain does as normal: fewer false alerts after
a crop or shift at the same threshold (docs/results/fit-set-sweep, chosen on validation over five seeds).
NERO's own arrays are always fitted on the images as stored (the paper's method). The changed images' features
are kept in the feature cache (--cache-dir; keyed by model, files, change and encoder versions), so a second fit
with other detector options skips every forward pass; --no-cache recomputes them.

--alert-option sets a constructor option of the alerting detector; for a z-score fusion, of one component
(COMPONENT.OPTION=VALUE). The bundled fusion shrinks its block statistics' covariance by 0.3, chosen for the
capture-chain fit set on validation over five seeds (docs/results/shrinkage-sweep); the class default, 0.1, was
chosen for the 280 clean rows and stays what every evaluation report fits.

With --alert-detector, any detector of the evaluation's table (a baseline or a fusion) is fitted on the same
ID train features, calibrated on the same ID validation features, and stored in the same artifact beside
NERO: `stream-monitor run` then alerts on its score, and NERO still explains every frame.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np

from .. import bundled
from ..baselines.fusion import is_zscore_fusion, needs_block_stats, stack_copies
from ..baselines.serving import (
    AlertDetector,
    fit_alert_detector,
    new_detector,
    save_with_alert_detector,
    servable_detectors,
)
from ..calibration import calibrate_over_changes, threshold_at_tpr
from ..data.features import extract_paths, model_fingerprint
from ..errors import InputError
from ..evaluation.dev_benchmark import EvaluationInputs, fit_default
from ..nero import NeroDetector
from ._common import add_model_arguments, add_split_arguments, cache_dir, load_model, load_split_arg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_split_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="detector artifact to write (.npz)")
    parser.add_argument("--mode", choices=("default", "parity", "robust"), default="default",
                        help="'default': the configuration chosen on the dev benchmark (read from the bundled "
                        "detector); 'parity': the paper's reference code; 'robust': the robust preset")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override one NERO hyperparameter (JSON value), e.g. --set k_fraction=0.5")
    parser.add_argument("--target-tpr", type=float, default=0.95, help="share of ID validation frames below the threshold")
    parser.add_argument("--alert-detector", metavar="NAME", default=None,
                        help="serve this detector's score as the alert (NERO explains): one of "
                        + ", ".join(servable_detectors()))
    parser.add_argument("--alert-option", action="append", default=[], metavar="[COMPONENT.]OPTION=VALUE",
                        help="a constructor option of the alerting detector (JSON value), e.g. --alert-option k=50 "
                        "for knn; for a z-score fusion, name the component: --alert-option bstats.shrinkage=0.3")
    parser.add_argument("--calibrate-over", choices=("clean", "capture-chain"), default="clean",
                        help="'clean': threshold on the ID validation frames as stored; 'capture-chain': the "
                        "highest of the thresholds on those frames after each benign capture change (the alerting "
                        "detector only; one forward of the validation frames per change, needs PyAV)")
    parser.add_argument("--fit-over", choices=("clean", "capture-chain"), default="clean",
                        help="'clean': fit the alerting detector on the ID train frames as stored; 'capture-chain': "
                        "also on a copy of each after every benign capture change (with --alert-detector; one "
                        "forward of the train frames per change, needs PyAV)")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InputError(f"--set expects FIELD=VALUE, got {pair!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def parse_alert_options(name: str | None, pairs: list[str]) -> dict[str, Any]:
    """--alert-option pairs → the options `fit_alert_detector` takes: {option: value} for a single detector,
    {component: {option: value}} for a z-score fusion (keys written COMPONENT.OPTION)."""
    if pairs and name is None:
        raise InputError("--alert-option sets an option of the alerting detector: give --alert-detector NAME too")
    flat = parse_overrides(pairs)
    if name is None or not is_zscore_fusion(name):
        return flat
    nested: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        component, dot, option = key.partition(".")
        if not dot or not option:
            raise InputError(f"--alert-option {key}=...: {name!r} is a fusion, name the component as "
                             f"COMPONENT.OPTION, e.g. bstats.shrinkage=0.3")
        nested.setdefault(component, {})[option] = value
    return nested


def resolve_options(mode: str, overrides: dict[str, Any]) -> dict[str, Any]:
    if mode == "default":
        options = NeroDetector.load(bundled.DETECTOR).config.to_dict()
    else:
        options = {"mode": mode}
    return {**options, **overrides}


def run(args: argparse.Namespace) -> int:
    options = resolve_options(args.mode, parse_overrides(args.set))
    model, model_sha = load_model(args)
    inputs = EvaluationInputs(model, load_split_arg(args), [], model_sha256=model_sha, model_name=str(args.model))
    if args.alert_detector is not None and args.alert_detector not in servable_detectors():
        raise InputError(f"unknown --alert-detector {args.alert_detector!r}; one of: {', '.join(servable_detectors())}")
    alert_options = parse_alert_options(args.alert_detector, args.alert_option)
    if args.alert_detector is not None:
        new_detector(args.alert_detector, alert_options)  # bad options fail now, not after the feature pass
    if args.fit_over == "capture-chain" and args.alert_detector is None:
        raise InputError("--fit-over capture-chain fits the alerting detector: give --alert-detector NAME too "
                         "(NERO's own arrays are always fitted on the train frames as stored)")
    for option in ("calibrate_over", "fit_over"):
        if getattr(args, option) == "capture-chain" and importlib.util.find_spec("av") is None:
            raise InputError(f"--{option.replace('_', '-')} capture-chain needs PyAV for the H.264 round trip: "
                             "pip install 'stream-monitor[bench]' (or pip install av)")
    det = fit_default(inputs, options, cache_dir(args), args.target_tpr)
    alert = None if args.alert_detector is None else fit_alert(inputs, args.alert_detector, cache_dir(args),
                                                               args.target_tpr, args.fit_over, alert_options)
    if args.calibrate_over == "capture-chain":  # recalibrate whichever detector raises the alert
        if alert is None:
            det.calibration = calibrate_over_capture_chain(inputs, det.score, False, args.target_tpr, cache_dir(args))
        else:
            alert.calibration = calibrate_over_capture_chain(inputs, alert.score, alert.needs_block_stats,
                                                             args.target_tpr, cache_dir(args))
    cal = det.calibration
    if alert is None:
        det.save(args.out)
    else:
        save_with_alert_detector(args.out, det, alert)
        fitted = f", fitted on the train frames and {len(alert.fit_changes)} capture-chain copies" \
            if alert.fit_changes else ""
        print(f"alert detector {alert.name}: threshold {alert.threshold:.6g} at "
              f"{alert.calibration.achieved_tpr:.1%} ID validation TPR ({alert.calibration.n_validation} frames)"
              f"{fitted}")
    print(f"wrote {args.out}: NERO {det.config.mode}, D = {det.feature_dim}, C = {det.num_classes}, "
          f"k = {det.k_}, threshold {cal.threshold:.6g} at {cal.achieved_tpr:.1%} ID validation TPR "
          f"({cal.n_validation} frames)")
    return 0


def fit_alert(inputs: EvaluationInputs, name: str, cache: Path | None, target_tpr: float,
              fit_over: str = "clean", options: dict[str, Any] | None = None) -> AlertDetector:
    """`name` fitted on the split's ID train features (with `fit_over` "capture-chain", also on their copies
    after every benign change), calibrated on its ID validation features (the features fit_default
    extracted: cached, not recomputed)."""
    model, split = inputs.model, inputs.split
    options = options or {}
    fingerprint = model_fingerprint(model)
    train = extract_paths(model, split.paths("train"), "ID train", cache, fingerprint)
    val = extract_paths(model, split.paths("val"), "ID val", cache, fingerprint)
    with_stats = needs_block_stats(name)  # `[feature | block statistics]`: a clear error for models without them
    train_x, val_x = (train.extended(), val.extended()) if with_stats else (train.features, val.features)
    labels = np.asarray(split.labels("train"))
    if fit_over == "clean":
        return fit_alert_detector(name, train_x, labels, *model.head_arrays(), val_x, target_tpr, **options)
    copies, changes = capture_chain_copies(inputs, with_stats, cache, fingerprint)
    x, y, groups = stack_copies([train_x, *copies], labels)
    return fit_alert_detector(name, x, y, *model.head_arrays(), val_x, target_tpr, groups=groups,
                              fit_changes=changes, **options)


def capture_chain_copies(inputs: EvaluationInputs, with_stats: bool, cache: Path | None = None,
                         fingerprint: str | None = None) -> tuple[list[np.ndarray], list[str]]:
    """Features of the split's ID train images after every benign change but "none", one (N, D) or extended
    array per change in the train order, and the changes' names (cached under `cache` when given: a refit with
    other detector options skips the forward passes)."""
    from tqdm.auto import tqdm

    from ..evaluation.benign_changes import CHANGES, changed_features

    paths = inputs.split.paths("train")
    changes = [c for c in CHANGES if c != "none"]
    copies = [changed_features(inputs.model, paths, change, with_stats, cache_dir=cache,
                               fingerprint=fingerprint).astype(np.float64)
              for change in tqdm(changes, desc=f"capture-chain fit set ({len(paths)} ID train frames)", leave=False)]
    return copies, changes


def calibrate_over_capture_chain(inputs: EvaluationInputs, score, with_stats: bool, target_tpr: float,
                                 cache: Path | None = None):
    """Calibration of `score` ((N, D) or extended features → (N,)) over the split's ID validation images after
    every benign change (calibration.calibrate_over_changes): the threshold the live alert then uses."""
    from tqdm.auto import tqdm

    from ..evaluation.benign_changes import CHANGES, changed_features

    paths = inputs.split.paths("val")
    fingerprint = model_fingerprint(inputs.model) if cache is not None else None
    scores = {}
    for change in tqdm(CHANGES, desc=f"capture-chain calibration ({len(paths)} ID val frames)", leave=False):
        features = changed_features(inputs.model, paths, change, with_stats, cache_dir=cache, fingerprint=fingerprint)
        scores[change] = score(features.astype(np.float64))
    calibration = calibrate_over_changes(scores, target_tpr)
    per_change = {c: threshold_at_tpr(s, target_tpr) for c, s in scores.items()}
    print(f"capture-chain calibration: threshold {calibration.threshold:.6g} (unchanged frames alone: "
          f"{per_change['none']:.6g}); the change that sets it: {max(per_change, key=per_change.get)}")
    return calibration
