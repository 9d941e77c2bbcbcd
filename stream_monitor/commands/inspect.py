"""Show what a detector artifact holds: configuration, fitted sizes, calibration and provenance.

examples:
  stream-monitor inspect stream_monitor/assets/nero_default.npz
  stream-monitor inspect my_detector.npz --json
"""

from __future__ import annotations

import argparse
import json

from ..artifact import read_artifact


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", help="a detector artifact (.npz) written by `stream-monitor fit`")
    parser.add_argument("--json", action="store_true", help="print the full metadata as JSON")


def run(args: argparse.Namespace) -> int:
    arrays, meta = read_artifact(args.artifact)
    if args.json:
        meta["arrays"] = {name: list(a.shape) for name, a in arrays.items()}
        print(json.dumps(meta, indent=2, sort_keys=True))
        return 0
    cal = meta.get("calibration")
    info = meta.get("fit_info", {})
    print(f"{args.artifact}: {meta.get('kind')} detector, format {meta['format_version']}")
    print(f"  classes     {meta.get('num_classes')}: {', '.join(meta.get('class_names', []))}")
    print(f"  features    D = {meta.get('feature_dim')}, k = {meta.get('k')}, λ = {meta.get('lambda', 0):.6g}")
    print(f"  config      {json.dumps(meta.get('config'))}")
    print(f"  trained on  {info.get('n_train')} samples {info.get('train_class_counts')}, created {info.get('created_at')}")
    print(f"  head sha256 {info.get('head_sha256')}")
    if cal:
        print(f"  threshold   {cal['threshold']:.6g} at ID TPR {cal['target_tpr']:.0%} (achieved {cal['achieved_tpr']:.1%} "
              f"on {cal['n_validation']} ID validation frames{_over_changes(cal)})")
    else:
        print("  threshold   none: run `stream-monitor fit` with ID validation data to calibrate one")
    served = meta.get("alert_detector")
    if served:  # stream-monitor fit --alert-detector: this detector raises the alert, NERO explains
        scal = served["calibration"]
        print(f"  alert       {served['name']} {json.dumps(served.get('options') or {})}: threshold "
              f"{scal['threshold']:.6g} at ID TPR {scal['target_tpr']:.0%} (achieved {scal['achieved_tpr']:.1%}"
              f"{_over_changes(scal)}); NERO above explains each frame")
        if served.get("fit_changes"):  # stream-monitor fit --fit-over capture-chain
            print(f"  alert fit   the train frames and a copy of each after every one of "
                  f"{len(served['fit_changes'])} capture-chain changes")
    if meta.get("site_model"):
        print("  site model  enrolled (stream-monitor enroll --site-model)")
    return 0


def _over_changes(calibration: dict) -> str:
    """', every one of 14 capture-chain changes' for `fit --calibrate-over capture-chain`, else ''."""
    changes = calibration.get("changes") or []
    return f", after every one of {len(changes)} capture-chain changes" if changes else ""
