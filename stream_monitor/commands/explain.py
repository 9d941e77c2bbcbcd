"""Explain NERO scores of images: the score and the parts it is made of, where the frame is unusual
(on a flagged image the validated scene map, when the detector's explanation artifact carries it — the
bundled one does; else the channel-deviation heatmap) and the neurons the score rests on, with what they usually respond to.

When the artifact serves an alert detector (the bundled one serves `fusion z(neco)+z(bstats)`), the
verdict is that detector's, exactly as the live monitor decides it: its score, threshold and parts;
NERO's own score, parts and neurons are then what explains the frame.

examples:
  stream-monitor explain ../shared/data/hyperkvasir-lgi/polyp/*.jpg --out results/explain
  stream-monitor explain frame.png --model my.pt --detector my_nero.npz --top 6 --out /tmp/why
  stream-monitor explain --measure --out docs/results/explanations   # maps vs polyp masks, per set
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from .. import bundled
from ..baselines.serving import load_alert_detector
from ..data.images import read_image
from ..engine import Scorer
from ..errors import InputError
from ..explanations.assets import load_beside, map_kind
from ..explanations.record import map_peak
from ..nero import NeroDetector
from ..nero.heatmap import explanation_figure
from ..preprocess import preprocess_batch
from ._common import add_model_arguments, load_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", type=Path, help="image files to explain")
    add_model_arguments(parser)
    parser.add_argument("--detector", type=Path, default=bundled.DETECTOR, help="NERO artifact (default: the bundled one)")
    parser.add_argument("--top", type=int, default=5, help="number of neurons to show")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs and explanations.json")
    parser.add_argument("--measure", action="store_true",
                        help="instead: measure the explanation maps against the polyp masks of the development "
                             "data (pointing game, mass inside, AUROC; per set) and write the report to --out")
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"), help="for --measure")


@torch.inference_mode()
def run(args: argparse.Namespace) -> int:
    if args.measure:
        from ..evaluation.explanation_run import main as measure

        return measure(["--data-root", str(args.data_root), "--out", str(args.out)])
    if not args.images:
        raise InputError("give image files to explain, or --measure")
    model, model_sha = load_model(args)
    weight, bias = model.head_arrays()
    det = NeroDetector.load(args.detector, weight=weight, bias=bias, model_sha256=model_sha)
    assets = load_beside(args.detector, weight, bias)
    nero_threshold = det.calibration.threshold if det.calibration else None
    alert = load_alert_detector(args.detector)  # what raises the live alert, when not NERO itself
    threshold = alert.threshold if alert is not None else nero_threshold
    scorer = Scorer(model, det, top_n=args.top, explanation=assets, alert=alert)
    if det.calibration is None:  # Scorer flags against the threshold; explain works without one
        from ..calibration import Calibration

        det.calibration = Calibration(threshold=float("inf"), target_tpr=float("nan"), achieved_tpr=float("nan"),
                                      n_validation=0)  # in memory only: nothing is flagged
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for path in args.images:
        image = read_image(path)
        scored = scorer.score_batch(preprocess_batch([image]))
        png = args.out / f"{path.stem}_explain.png"
        components = {name: float(z[0]) for name, z in getattr(scored, "components", {}).items()}
        served_parts = None if alert is None else served_parts_text(alert.name, components)
        explanation_figure(png, image, scored, 0, det.class_names, threshold, det.config, path.name,
                           assets.atlas if assets is not None else None, served_parts)
        record = {
            "image": str(path),
            "score": float(scored.score[0]),
            "threshold": threshold,
            "flagged": bool(threshold is not None and scored.score[0] > threshold),
            "predicted_class": det.class_names[int(np.argmax(scored.probs[0]))],
            "map": map_kind(assets, bool(scored.over_threshold[0])),
            "map_peak": map_peak(scored.heatmaps[0] if scored.heatmaps is not None else None),
            "top_neurons": [int(n) for n in scored.top_neurons[0]],
            "deviations": [float(v) for v in scored.deviations[0]],
            "deviations_meaning": ("part of the score, + fires more / − less than on ID frames" if assets is not None
                               else "relevance minus the nearest class centroid"),
            "figure": str(png),
        }
        if alert is not None:
            record.update(detector=alert.name, components=components, nero_score=float(scored.nero_score[0]),
                          nero_threshold=nero_threshold)
        if not (det.config.use_residual and not (det.config.use_distance or det.config.use_bias)):
            record.update(distance=float(scored.distance[0]), bias_term=float(scored.bias_term[0]), rho=float(scored.rho[0]))
        records.append(record)
        state = "OOD" if record["flagged"] else "ok "
        print(f"{state} score {record['score']:10.4g}  {path.name}  → {png}")
    (args.out / "explanations.json").write_text(json.dumps(records, indent=2) + "\n")
    return 0



def served_parts_text(detector: str, components: dict[str, float]) -> str:
    """The overlay's parts line for a served detector (overlay.explanation_panel.alert_terms_line: a fusion's
    standardised components in words, summing to its score), with the detector's name."""
    from ..overlay.explanation_panel import alert_terms_line

    line = alert_terms_line({"detector": detector, "components": components})
    return line if not components else f"{line}  ({detector})"
