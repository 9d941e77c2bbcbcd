"""Explain NERO scores of images: the score and its parts, the neurons that deviate most from the
nearest ID class centroid (bar chart) and, for CNNs, where those neurons fire (heatmap on the image).

examples:
  stream-monitor explain ../shared/data/hyperkvasir-lgi/polyp/*.jpg --out results/explain
  stream-monitor explain frame.png --model my.pt --detector my_nero.npz --top 15 --out /tmp/why
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from .. import bundled
from ..data.images import read_image
from ..nero import NeroDetector
from ..nero.heatmap import deviation_heatmap, explanation_figure
from ..preprocess import preprocess_batch
from ._common import add_model_arguments, load_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files to explain")
    add_model_arguments(parser)
    parser.add_argument("--detector", type=Path, default=bundled.DETECTOR, help="NERO artifact (default: the bundled one)")
    parser.add_argument("--top", type=int, default=10, help="number of neurons to show")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs and explanations.json")


@torch.inference_mode()
def run(args: argparse.Namespace) -> int:
    model, model_sha = load_model(args)
    weight, bias = model.head_arrays()
    det = NeroDetector.load(args.detector, weight=weight, bias=bias, model_sha256=model_sha)
    threshold = det.calibration.threshold if det.calibration else None
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for path in args.images:
        image = read_image(path)
        _, features, feature_map = model(torch.from_numpy(preprocess_batch([image])))
        exp = det.explain(features.double().numpy(), top_n=args.top)
        heat = None
        if feature_map is not None:
            heat = deviation_heatmap(feature_map[0].numpy(), exp.top_neurons[0], exp.deviations[0])
        png = args.out / f"{path.stem}_explain.png"
        explanation_figure(png, image, exp, 0, det.class_names, threshold, heat, path.name)
        record = {
            "image": str(path),
            "score": float(exp.parts.score[0]),
            "threshold": threshold,
            "flagged": bool(threshold is not None and exp.parts.score[0] > threshold),
            "distance": float(exp.parts.distance[0]),
            "bias_term": float(exp.parts.bias_term[0]),
            "rho": float(exp.parts.rho[0]),
            "predicted_class": det.class_names[int(np.argmax(exp.parts.probs[0]))],
            "reference_class": det.class_names[int(exp.reference_class[0])],
            "top_neurons": exp.top_neurons[0].tolist(),
            "deviations": exp.deviations[0].tolist(),
            "figure": str(png),
        }
        records.append(record)
        state = "OOD" if record["flagged"] else "ok "
        print(f"{state} score {record['score']:10.4g}  {path.name}  → {png}")
    (args.out / "explanations.json").write_text(json.dumps(records, indent=2) + "\n")
    return 0
