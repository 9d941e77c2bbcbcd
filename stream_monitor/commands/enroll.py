"""Enroll a site: adapt the NERO detector to footage a clinician confirms is NORMAL at this site.

No labels are needed (the classifier's predicted classes are used where classes are needed). Part of the
footage is held back — whole sub-folders when the folder has several, otherwise contiguous blocks spread
over the recording — and only used to set the new threshold at --target-tpr of it. The artifact written
is a normal NERO detector: point the monitor's `model.detector` at it. The detector's explanations
(`<detector>.explain.npz`: neuron thumbnails, the scene map's settings) are written beside it too; the
scene map was validated with the bundled detector's score (docs/results/explanations), not re-measured
for the site's.

Procedures (measured in docs/results/domain-shift/report.md; read it before choosing):
  threshold  keep the detector, set the threshold on the site's held-back normal footage (default: the
             one the report's selection rule picked among these three on the dev sequences)
  extend     also keep the original subspace and centroids and ADD site directions and site centroids
  recenter   shift the relevance centre to the site's mean (costs the original site's sensitivity)

Site model (opt-in with --site-model; not yet validated, see below): a patch-level memory of this
site's normal appearance (stream_monitor/site), with a threshold set by cross-fitting over the
recordings (sub-folders) or, for one recording, over --blocks contiguous blocks. It is stored in the same
artifact; `stream-monitor run` then flags a frame when the fused evidence (--fusion) is below --target-tpr's
complement, and says which evidence fired. Measured per hospital (docs/results/site-enrollment/report.md):
it ranks a centre's polyps above its unseen normal recordings, but at the enrolled threshold the settings
chosen by leave-one-centre-out flagged only 4.5–18.9 % of the polyps on the dev data, and it costs about 3×
NERO's time per frame (about 30 ms on one core with the OpenVINO engine; benchmarks/results/site_model_cost-*)
— so it is off by default; read the report
before relying on it. Enroll two or more recordings of each video chain (scope, processor, capture) the
site uses: a recording unlike the rest sets the threshold by that difference (enroll warns about it).

Enrollment cannot make the classifier valid at a site it was never trained or validated on.

examples:
  stream-monitor enroll --source /data/site_a/normal_cases/ --out site_a_nero.npz
  stream-monitor enroll --source normal_colonoscopy.mp4 --every-s 1 --out site_a_nero.npz
  stream-monitor enroll --source 0 --duration-s 300 --out site_a_nero.npz      # capture device 0, 5 min
  stream-monitor enroll --source normal.mp4 --procedure extend --out site_a_extend.npz
  stream-monitor enroll --source site_a_recordings/ --site-model --fusion min --out site_a.npz   # either fires
  bash scripts/site_enrollment_demo.sh        # enroll PolypGen centre A, replay unseen footage + polyps live
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from .. import bundled
from ..baselines.serving import load_alert_detector, save_with_alert_detector
from ..calibration import calibrate_threshold
from ..data.images import iter_frames, list_images, read_image
from ..errors import InputError
from ..explanations.assets import explanation_path, load_beside
from ..nero import NeroDetector
from ..site.artifact import save_with_site_model
from ..site.calibration import FUSION_RULES
from ..site.enroll import PROCEDURES, EnrollOptions, enroll_detector, holdout_mask
from ..site.footage import analyse_footage, block_groups
from ..site.patch_memory import PatchFeatureExtractor
from ..site.site_model import SiteOptions, enroll_site
from ._common import add_model_arguments, load_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True,
                        help="normal footage of the site: a video file, a folder of images (sub-folders = "
                        "separate recordings), or a capture device (an index such as 0, or an rtsp:// URL)")
    parser.add_argument("--out", type=Path, required=True, help="site detector artifact to write (.npz)")
    add_model_arguments(parser)
    parser.add_argument("--detector", type=Path, default=bundled.DETECTOR, help="detector to adapt (default: bundled)")
    parser.add_argument("--procedure", choices=PROCEDURES, default=EnrollOptions.procedure,
                        help="see above (default: %(default)s)")
    parser.add_argument("--holdout", type=float, default=0.3, help="share held back for the threshold (default: %(default)s)")
    parser.add_argument("--target-tpr", type=float, default=0.95, help="share of held-back frames below the threshold")
    parser.add_argument("--every-s", type=float, default=1.0,
                        help="video / device: keep one frame per this many seconds (default: %(default)s)")
    parser.add_argument("--duration-s", type=float, default=300.0, help="device: seconds to record (default: %(default)s)")
    parser.add_argument("--site-components", type=int, default=20, help="extend: site directions added")
    parser.add_argument("--site-clusters", type=int, default=4, help="extend: site centroids added")
    parser.add_argument("--alpha", type=float, default=1.0, help="recenter: share of the site offset removed")
    site = parser.add_argument_group("site model")
    site.add_argument("--site-model", action=argparse.BooleanOptionalAction, default=False,
                      help="also build the patch-level site model (default: off, NERO's procedure alone)")
    site.add_argument("--fusion", choices=FUSION_RULES, default=SiteOptions.fusion,
                      help="how the site model and NERO combine after enrollment (default: %(default)s)")
    site.add_argument("--site-backbone", choices=("imagenet", "bundled"), default=SiteOptions.backbone,
                      help="patch features: the ImageNet EfficientNet-Lite0 or the classifier's own backbone")
    site.add_argument("--top-k", type=int, default=SiteOptions.top_k, help="patches averaged into a frame score")
    site.add_argument("--coreset-fraction", type=float, default=SiteOptions.coreset_fraction,
                      help="share of each group's patches kept in the memory (default: %(default)s)")
    site.add_argument("--specular-cover", type=float, default=SiteOptions.specular_cover,
                      help="cells with more than this share of specular-highlight pixels are left out of the site "
                           "model (default: %(default)s; a negative value keeps them)")
    site.add_argument("--blocks", type=int, default=5,
                      help="one recording: contiguous blocks it is cut into for cross-fitting (default: %(default)s)")


def _video_frames(path: Path, every_s: float) -> Iterator[tuple[str, np.ndarray]]:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    capture.release()
    stride = max(1, round(every_s * fps))
    for record in iter_frames(path, stride):
        yield f"{record.name}#{record.index}", record.image


def _device_frames(target: str, every_s: float, duration_s: float) -> Iterator[tuple[str, np.ndarray]]:
    capture = cv2.VideoCapture(int(target) if target.isdigit() else target)
    if not capture.isOpened():
        raise InputError(f"cannot open capture device {target!r}")
    try:
        start = next_t = time.monotonic()
        while time.monotonic() - start < duration_s:
            ok, frame = capture.read()
            if not ok:
                raise InputError(f"capture device {target!r} stopped delivering frames")
            if time.monotonic() >= next_t:
                next_t += every_s
                yield f"device#{time.monotonic() - start:.1f}s", frame
    finally:
        capture.release()


class _LazyImages:
    """(name, frame) pairs of image files, read when iterated: a folder of 1080p frames never sits in
    memory at full size (analyse_footage reduces each to 224 × 224 at once)."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        return ((str(f), read_image(f)) for f in self.files)


def load_footage(args: argparse.Namespace) -> tuple[list[tuple[str, np.ndarray]] | _LazyImages, np.ndarray | None]:
    """The frames, and for a folder of several recordings (sub-folders, symlinked ones followed) the
    recording index of each frame (None for a video or a device)."""
    path = Path(args.source)
    if path.is_dir():
        files = list_images(path, recursive=True)
        if not files:
            raise InputError(f"--source {path} holds no images (searched its sub-folders too, links followed)")
        groups = [f.relative_to(path).parts[0] if len(f.relative_to(path).parts) > 1 else "" for f in files]
        names = sorted(set(groups))
        return _LazyImages(files), np.array([names.index(g) for g in groups])
    if path.is_file():
        return list(_video_frames(path, args.every_s)), None
    return list(_device_frames(args.source, args.every_s, args.duration_s)), None


def held_back(n_frames: int, groups: np.ndarray | None, holdout: float) -> np.ndarray:
    """Whole recordings when there are several (≥ 3, spread over them), else contiguous blocks."""
    if groups is None or groups.max() < 2:
        return holdout_mask(n_frames, holdout)
    chosen = np.flatnonzero(holdout_mask(groups.max() + 1, holdout, block=1))
    return np.isin(groups, chosen)


def _site_groups(groups: np.ndarray | None, n_frames: int, blocks: int) -> np.ndarray:
    """Recordings when the folder has several (≥ 2), else contiguous blocks of the one recording."""
    if groups is not None and groups.max() >= 1:
        return groups
    return block_groups(n_frames, blocks)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    model, model_sha = load_model(args)
    weight, bias = model.head_arrays()
    det = NeroDetector.load(args.detector, weight=weight, bias=bias, model_sha256=model_sha)
    # the explanations beside the detector (same classifier head: the neuron atlas and the scene map hold for
    # the site's detector) are checked now, before minutes of footage, and written beside the new one
    explanations = load_beside(args.detector, weight, bias)
    frames, groups = load_footage(args)
    mask = held_back(len(frames), groups, args.holdout)
    print(f"enroll: {len(frames)} frames from {args.source}: {int((~mask).sum())} to fit, "
          f"{int(mask.sum())} held back for the threshold", flush=True)
    options = SiteOptions(top_k=args.top_k, alpha=round(1.0 - args.target_tpr, 10), fusion=args.fusion,
                          backbone=args.site_backbone, coreset_fraction=args.coreset_fraction,
                          specular_cover=None if args.specular_cover is None or args.specular_cover < 0
                          else args.specular_cover)
    extractor = PatchFeatureExtractor(model if options.backbone == "bundled" else None, options.layer)
    footage = analyse_footage(frames, model, extractor, total=len(frames), specular_cover=options.specular_cover)
    features = footage.features.astype(np.float64)
    nero_options = EnrollOptions(args.procedure, args.site_components, args.site_clusters, args.alpha, args.target_tpr)
    site_det = enroll_detector(det, features[~mask], features[mask], nero_options)
    site_det.fit_info["enrollment"]["source"] = str(args.source)
    summary = {"out": str(args.out), "procedure": args.procedure, "frames": len(frames),
               "held_back": int(mask.sum()), "threshold_before": det.calibration.threshold if det.calibration else None,
               "threshold_after": site_det.threshold,
               "held_back_over_threshold_before":
                   float(np.mean(det.score(features[mask]) > det.threshold)) if det.calibration else None,
               "held_back_over_threshold_after": float(np.mean(site_det.score(features[mask]) > site_det.threshold))}
    alert = load_alert_detector(args.detector)
    if alert is not None and not args.site_model:
        # the served detector raises the alert: its threshold moves to the site's held-back footage too
        # (it is not refitted on the site's frames, whatever the NERO procedure)
        alert_input = footage.alert_input(alert.needs_block_stats)[mask]
        site_alert = dataclasses.replace(alert, calibration=calibrate_threshold(alert.score(alert_input),
                                                                               args.target_tpr))
        save_with_alert_detector(args.out, site_det, site_alert)
        summary["alert_detector"] = {
            "name": alert.name, "threshold_before": alert.threshold, "threshold_after": site_alert.threshold,
            "held_back_over_threshold_before": float(np.mean(alert.score(alert_input) > alert.threshold))}
        summary["held_back_over_threshold_after"] = float(np.mean(alert.score(alert_input) > site_alert.threshold))
    elif not args.site_model:
        site_det.save(args.out)
    else:
        if alert is not None:
            print(f"note: the site model is fused with NERO's score; the served alert detector ({alert.name}) of "
                  f"{args.detector} is not carried into {args.out}", flush=True)
        site_groups = _site_groups(groups, len(frames), args.blocks)
        nero_scores = site_det.score(features)
        # NERO is not fitted on the site's frames under `threshold`; other procedures are, on the fit part
        nero_cal = nero_scores if args.procedure == "threshold" else nero_scores[mask]
        parts = [np.flatnonzero(site_groups == g) for g in np.unique(site_groups)]
        site = enroll_site([footage.maps[i] for i in parts], [footage.valid[i] for i in parts], [nero_cal], options)
        site.info["source"] = str(args.source)
        save_with_site_model(args.out, site_det, site)
        summary["site_model"] = {"groups": len(parts), "memory_size": site.memory.size, "fusion": options.fusion,
                                 "alpha": options.alpha, "backbone": options.backbone,
                                 "site_threshold": site.site_threshold, "unlike_groups": site.info["unlike_groups"]}
        if site.info["unlike_groups"]:
            kind = "recordings (sub-folders in name order, from 0)" if groups is not None and groups.max() >= 1 \
                else "blocks of the recording"
            print(f"warning: {kind} {site.info['unlike_groups']} look unlike the rest of the footage (another "
                  "video chain, scope or light?): the site threshold is then set by that difference and flags few "
                  "polyps. Enroll two or more recordings of each video chain the site uses "
                  "(docs/results/site-enrollment/diagnosis.md).", flush=True)
    if explanations is not None and explanation_path(args.out).resolve() != explanation_path(args.detector).resolve():
        explanations.save(explanation_path(args.out))
        summary["explanations"] = str(explanation_path(args.out))
    summary["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(summary, indent=1))
    print(f"wrote {args.out}. The held-back share over the threshold is {summary['held_back_over_threshold_after']:.1%} "
          f"by construction; the new threshold is only as good as the footage was normal and representative.")
    return 0
