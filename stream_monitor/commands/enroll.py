"""Enroll a site: adapt the NERO detector to footage a clinician confirms is NORMAL at this site.

No labels are needed (the classifier's predicted classes are used where classes are needed). Part of the
footage is held back — whole sub-folders when the folder has several, otherwise contiguous blocks spread
over the recording — and only used to set the new threshold at --target-tpr of it. The artifact written
is a normal NERO detector: point the monitor's `model.detector` at it.

Procedures (measured in docs/results/domain-shift/report.md; read it before choosing):
  threshold  keep the detector, set the threshold on the site's held-back normal footage (default: the
             one the report's selection rule picked among these three on the dev sequences)
  extend     also keep the original subspace and centroids and ADD site directions and site centroids
  recenter   shift the relevance centre to the site's mean (costs the original site's sensitivity)

Enrollment can lower false alerts on this site's normal footage. It cannot make the classifier valid at
a site it was never trained or validated on, and on the dev data it did not recover polyp sensitivity.

examples:
  stream-monitor enroll --source /data/site_a/normal_cases/ --out site_a_nero.npz
  stream-monitor enroll --source normal_colonoscopy.mp4 --every-s 1 --out site_a_nero.npz
  stream-monitor enroll --source 0 --duration-s 300 --out site_a_nero.npz      # capture device 0, 5 min
  stream-monitor enroll --source normal.mp4 --procedure extend --out site_a_extend.npz
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from .. import bundled
from ..data.features import extract
from ..data.images import iter_frames, list_images, read_image
from ..errors import InputError
from ..nero import NeroDetector
from ..site.enroll import PROCEDURES, EnrollOptions, enroll_detector, holdout_mask
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


def load_footage(args: argparse.Namespace) -> tuple[list[tuple[str, np.ndarray]], np.ndarray | None]:
    """The frames, and for a folder of several recordings the recording index of each frame."""
    path = Path(args.source)
    if path.is_dir():
        files = list_images(path, recursive=True)
        if not files:
            raise InputError(f"--source {path} holds no images")
        groups = [f.relative_to(path).parts[0] if len(f.relative_to(path).parts) > 1 else "" for f in files]
        names = sorted(set(groups))
        group_ids = np.array([names.index(g) for g in groups]) if len(names) >= 3 else None
        return [(str(f), read_image(f)) for f in files], group_ids
    if path.is_file():
        return list(_video_frames(path, args.every_s)), None
    return list(_device_frames(args.source, args.every_s, args.duration_s)), None


def held_back(n_frames: int, groups: np.ndarray | None, holdout: float) -> np.ndarray:
    """Whole recordings when there are several (spread over them), else contiguous blocks."""
    if groups is None:
        return holdout_mask(n_frames, holdout)
    chosen = np.flatnonzero(holdout_mask(groups.max() + 1, holdout, block=1))
    return np.isin(groups, chosen)


def run(args: argparse.Namespace) -> int:
    model, model_sha = load_model(args)
    weight, bias = model.head_arrays()
    det = NeroDetector.load(args.detector, weight=weight, bias=bias, model_sha256=model_sha)
    frames, groups = load_footage(args)
    mask = held_back(len(frames), groups, args.holdout)
    print(f"enroll: {len(frames)} frames from {args.source}: {int((~mask).sum())} to fit, "
          f"{int(mask.sum())} held back for the threshold", flush=True)
    features = extract(model, iter(frames), len(frames), description="site footage").features
    options = EnrollOptions(args.procedure, args.site_components, args.site_clusters, args.alpha, args.target_tpr)
    site = enroll_detector(det, features[~mask], features[mask], options)
    site.fit_info["enrollment"]["source"] = str(args.source)
    site.save(args.out)
    before = float(np.mean(det.score(features[mask]) > det.threshold)) if det.calibration else None
    summary = {"out": str(args.out), "procedure": args.procedure, "frames": len(frames),
               "held_back": int(mask.sum()), "threshold_before": det.calibration.threshold if det.calibration else None,
               "threshold_after": site.threshold,
               "held_back_over_threshold_before": before,
               "held_back_over_threshold_after": float(np.mean(site.score(features[mask]) > site.threshold))}
    print(json.dumps(summary, indent=1))
    print(f"wrote {args.out}. The held-back share over the threshold is {summary['held_back_over_threshold_after']:.1%} "
          f"by construction; the new threshold is only as good as the footage was normal and representative.")
    return 0
