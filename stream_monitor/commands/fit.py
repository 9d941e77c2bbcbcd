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

With --alert-detector, any detector of the evaluation's table (a baseline or a fusion) is fitted on the same
ID train features, calibrated on the same ID validation features, and stored in the same artifact beside
NERO: `stream-monitor run` then alerts on its score, and NERO still explains every frame.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .. import bundled
from ..baselines.fusion import needs_block_stats
from ..baselines.serving import AlertDetector, fit_alert_detector, save_with_alert_detector, servable_detectors
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
    det = fit_default(inputs, options, cache_dir(args), args.target_tpr)
    cal = det.calibration
    if args.alert_detector is None:
        det.save(args.out)
    else:
        alert = fit_alert(inputs, args.alert_detector, cache_dir(args), args.target_tpr)
        save_with_alert_detector(args.out, det, alert)
        print(f"alert detector {alert.name}: threshold {alert.threshold:.6g} at "
              f"{alert.calibration.achieved_tpr:.1%} ID validation TPR ({alert.calibration.n_validation} frames)")
    print(f"wrote {args.out}: NERO {det.config.mode}, D = {det.feature_dim}, C = {det.num_classes}, "
          f"k = {det.k_}, threshold {cal.threshold:.6g} at {cal.achieved_tpr:.1%} ID validation TPR "
          f"({cal.n_validation} frames)")
    return 0


def fit_alert(inputs: EvaluationInputs, name: str, cache: Path | None, target_tpr: float) -> AlertDetector:
    """`name` fitted on the split's ID train features, calibrated on its ID validation features (the
    features fit_default extracted: cached, not recomputed)."""
    model, split = inputs.model, inputs.split
    fingerprint = model_fingerprint(model)
    train = extract_paths(model, split.paths("train"), "ID train", cache, fingerprint)
    val = extract_paths(model, split.paths("val"), "ID val", cache, fingerprint)
    if needs_block_stats(name):  # `[feature | block statistics]`: a clear error for models without them
        return fit_alert_detector(name, train.extended(), split.labels("train"), *model.head_arrays(), val.extended(),
                                  target_tpr)
    return fit_alert_detector(name, train.features, split.labels("train"), *model.head_arrays(), val.features,
                              target_tpr)
