"""Domain shift measurements (issue 8): the stream-level drift signal and site enrollment, for NERO and
every baseline, on other hospitals' footage.

    python -m stream_monitor.evaluation.domain_shift --out docs/results/domain-shift

What is used for what (split by sequence, never by frame):
- HyperKvasir split (configs/splits/hyperkvasir-lgi.json): train fits every detector, val sets its
  95 % threshold, test images make the in-domain streams; HyperKvasir polyps check that enrollment keeps
  the original site's sensitivity.
- PolypGen negative sequences (other centres' normal colon), 12 sequences, two folds by sequence
  (ENROLL_FOLDS): per fold 4 sequences fit the enrollment, 2 more are held back to set its threshold,
  the other 6 are the held-out site footage on which false alerts are counted.
  A second design takes one centre as the site (centres read from the manifest's source paths): each
  sequence of a centre is evaluated once, the next one of that centre sets the threshold, the rest enroll.
- CVC-ClinicDB polyp sequences: seq01–07 choose enrollment hyperparameters (CVC_DEV), seq08–15 are
  only reported (CVC_TEST).
- The drift signal's parameters (p0 from the calibration, p1 = 0.25, ARL0 = 8 h at 1 decision/s) were
  fixed before any of this footage was scored; nothing here tunes them.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import bundled
from ..calibration import threshold_at_tpr
from ..data.features import default_cache_dir, extract_paths, model_fingerprint
from ..data.split import load_split
from ..models.registry import load_classifier
from ..nero import NeroDetector
from ..site.drift import DriftMonitor, design, run_length
from ..site.enroll import EnrollOptions, enroll_detector
from .datasets import DEFAULT_SPLIT, SHARED_DATA
from .domain_shift_protocol import CVC_DEV, DRIFT_ARL0, DRIFT_P1, ENROLL_FOLDS, ID_STREAMS, TARGET_TPR
from .methods import baseline_methods
from .ood_metrics import auroc
from .sequences import CVC, POLYPGEN, Sequence, load_sequences

MANIFEST = "sequences_MANIFEST.tsv"
NERO_GRID = ([EnrollOptions("extend", site_components=c, site_clusters=k) for c in (5, 20) for k in (4, 8)]
             + [EnrollOptions("recenter", alpha=a) for a in (0.5, 1.0)])


@dataclass
class Data:
    train: np.ndarray
    train_labels: np.ndarray
    val: np.ndarray
    test: np.ndarray
    hk_polyp: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    polypgen: list[Sequence]
    cvc: list[Sequence]

    def cvc_features(self, dev: bool) -> np.ndarray:
        return np.concatenate([s.features for s in self.cvc if s.name.startswith(CVC_DEV) == dev])


def load_data(cache_dir: Path | None = None) -> Data:
    cache_dir = cache_dir or default_cache_dir()
    model, _ = load_classifier(bundled.MODEL)
    fp = model_fingerprint(model)
    split = load_split(DEFAULT_SPLIT)
    sets = {s: extract_paths(model, split.paths(s), s, cache_dir, fp, progress=False) for s in ("train", "val", "test")}
    polyps = [split.root / i.file for i in split.subsets["ood"] if i.class_name == "polyp"]
    weight, bias = model.head_arrays()
    return Data(sets["train"].features, split.labels("train"), sets["val"].features, sets["test"].features,
                extract_paths(model, polyps, "polyp", cache_dir, fp, progress=False).features, weight, bias,
                load_sequences(model, POLYPGEN, cache_dir, fingerprint=fp),
                load_sequences(model, CVC, cache_dir, fingerprint=fp))


# ----------------------------------------------------------------------------------------- methods
@dataclass
class Scorer:
    """A fitted frame scorer: score(features) → (N,) and its threshold."""

    name: str
    score: Callable[[np.ndarray], np.ndarray]
    threshold: float


def fitted_methods(data: Data) -> dict[str, tuple[Callable[[], object], object]]:
    """name → (factory, detector fitted on HyperKvasir train). NERO default = the bundled configuration."""
    bundled_cfg = NeroDetector.load(bundled.DETECTOR).config
    factories: dict[str, Callable[[], object]] = {
        "nero_default": lambda: NeroDetector(config=bundled_cfg),
        "nero_parity": lambda: NeroDetector("parity"),
    }
    factories.update({m.name: m.build for m in baseline_methods()})
    return {name: (make, make().fit(data.train, data.train_labels, data.weight, data.bias))
            for name, make in factories.items()}


# ------------------------------------------------------------------------------------------- drift
def id_streams(over: np.ndarray, n_streams: int, length: int, rng: np.random.Generator, blocked: np.ndarray | None
               = None) -> list[np.ndarray]:
    """In-domain streams from independent test images: random orderings, concatenated to `length`.
    With `blocked` (class of each image), images come in runs of 20 of one class, as a procedure would."""
    streams = []
    for _ in range(n_streams):
        parts, total = [], 0
        while total < length:
            if blocked is None:
                part = over[rng.permutation(len(over))]
            else:
                runs = []
                for c in rng.permutation(np.unique(blocked)):
                    idx = rng.permutation(np.flatnonzero(blocked == c))
                    runs += [idx[i:i + 20] for i in range(0, len(idx), 20)]
                part = np.concatenate([over[runs[i]] for i in rng.permutation(len(runs))])
            parts.append(part)
            total += len(part)
        streams.append(np.concatenate(parts)[:length])
    return streams


def count_raises(over: np.ndarray, drift_design) -> int:
    monitor = DriftMonitor(drift_design)
    return sum(monitor.decide(bool(b)) == "raise" for b in over)


def drift_rows(data: Data, methods: dict, test_classes: np.ndarray, seed: int = 0) -> list[dict]:
    rows = []
    for name, (_, det) in methods.items():
        tau = threshold_at_tpr(det.score(data.val), TARGET_TPR)
        p0 = float(np.mean(det.score(data.val) > tau))
        d = design(round(p0, 4), DRIFT_P1, DRIFT_ARL0)
        test_over = det.score(data.test) > tau
        rng = np.random.default_rng(seed)
        shuffled = [count_raises(s, d) for s in id_streams(test_over, ID_STREAMS, 3600, rng)]
        blocked = [count_raises(s, d) for s in id_streams(test_over, ID_STREAMS, 3600, rng, test_classes)]
        row = {"method": name, "p0": p0, "h": d.threshold, "id_test_share": float(test_over.mean()),
               "false_raises_per_h_shuffled": float(np.mean(shuffled)),
               "false_raises_per_h_class_runs": float(np.mean(blocked)),
               "design_false_raises_per_h": d.false_raises_per_hour(1.0)}
        for label, seqs in (("polypgen", data.polypgen), ("cvc", data.cvc)):
            overs = [det.score(s.features) > tau for s in seqs]
            lengths = [run_length(o, d) for o in overs]
            raised = [x for x in lengths if x is not None]
            row[f"{label}_share"] = float(np.mean(np.concatenate(overs)))
            row[f"{label}_raised"] = f"{len(raised)}/{len(seqs)}"
            row[f"{label}_median_decisions"] = float(np.median(raised)) if raised else None
            row[f"{label}_per_sequence"] = {s.name: (x, len(s.paths)) for s, x in zip(seqs, lengths)}
            row[f"{label}_concatenated_first_raise"] = run_length(np.concatenate(overs), d)
        rows.append(row)
    return rows


# -------------------------------------------------------------------------------------- enrollment
def pooled_folds(data: Data) -> dict[str, tuple[list[Sequence], list[Sequence], list[Sequence]]]:
    """The two folds of ENROLL_FOLDS: each mixes PolypGen centres (the 'site' is the pooled centres)."""
    return {f: tuple([data.polypgen[i] for i in idx] for idx in parts)  # type: ignore[misc]
            for f, parts in ENROLL_FOLDS.items()}


def sequence_centres(shared_data: Path = SHARED_DATA) -> dict[str, str]:
    """PolypGen sequence → centre letter, read from the manifest's source paths (data/centre_A/...)."""
    centres = {}
    for line in (shared_data / MANIFEST).read_text().splitlines()[1:]:
        cols = line.split("\t")
        found = re.search(r"centre_([A-Z])", cols[6]) if len(cols) > 6 and cols[0].startswith("PolypGen") else None
        if found:
            centres[cols[2]] = found.group(1)
    return centres


def centre_folds(data: Data) -> dict[str, tuple[list[Sequence], list[Sequence], list[Sequence]]]:
    """One site = one PolypGen centre: for each sequence of a centre, evaluate on it, hold back the next
    sequence of that centre for the threshold, enroll on the rest (centres with ≥ 3 sequences)."""
    centres = sequence_centres()
    folds = {}
    for centre in sorted(set(centres.values())):
        seqs = [s for s in data.polypgen if centres.get(s.name) == centre]
        for i, evaluate in enumerate(seqs):
            if len(seqs) < 3:
                break
            hold = seqs[(i + 1) % len(seqs)]
            folds[f"{centre}:{evaluate.name}"] = ([s for s in seqs if s not in (evaluate, hold)], [hold], [evaluate])
    return folds


def _feats(seqs: list[Sequence]) -> np.ndarray:
    return np.concatenate([s.features for s in seqs])


def _logits(seqs: list[Sequence]) -> np.ndarray:
    return np.concatenate([s.logits for s in seqs])


def procedures(name: str, make: Callable, det, data: Data, fit: list[Sequence], hold: list[Sequence]) -> dict[str, Scorer]:
    """Every procedure for one method and one fold → fitted scorers (threshold on the hold-back)."""
    fit_x, hold_x = _feats(fit), _feats(hold)
    out = {"none": Scorer("none", det.score, threshold_at_tpr(det.score(data.val), TARGET_TPR)),
           "threshold": Scorer("threshold", det.score, threshold_at_tpr(det.score(hold_x), TARGET_TPR))}
    # Naive refit (the table): HyperKvasir train + site frames with predicted labels.
    refit = make().fit(np.concatenate([data.train, fit_x]),
                       np.concatenate([data.train_labels, _logits(fit).argmax(1)]), data.weight, data.bias)
    out["refit"] = Scorer("refit", refit.score, threshold_at_tpr(refit.score(hold_x), TARGET_TPR))
    # Feature re-centering: remove the site's mean feature offset, any detector unchanged.
    shift = fit_x.mean(0) - data.train.mean(0)
    recentred = lambda x, det=det, shift=shift: det.score(x - shift)  # noqa: E731
    out["feature-recenter"] = Scorer("feature-recenter", recentred, threshold_at_tpr(recentred(hold_x), TARGET_TPR))
    if isinstance(det, NeroDetector):
        det.calibrate(data.val, TARGET_TPR)
        for opt in NERO_GRID:
            site = enroll_detector(det, fit_x, hold_x, opt)
            label = (f"extend c={opt.site_components} k={opt.site_clusters}" if opt.procedure == "extend"
                     else f"recenter α={opt.alpha:g}")
            out[label] = Scorer(label, site.score, site.threshold)
    return out


def enrollment_rows(data: Data, methods: dict, folds: dict) -> list[dict]:
    rows = []
    cvc_dev, cvc_test = data.cvc_features(True), data.cvc_features(False)
    for name, (make, det) in methods.items():
        for fold, (fit, hold, evaluate) in folds.items():
            eval_x, hold_x = _feats(evaluate), _feats(hold)
            for label, sc in procedures(name, make, det, data, fit, hold).items():
                s_eval, s_dev, s_test = sc.score(eval_x), sc.score(cvc_dev), sc.score(cvc_test)
                d = design(0.05, DRIFT_P1, DRIFT_ARL0)
                rows.append({
                    "method": name, "procedure": label, "fold": fold,
                    "site_false_alerts": float(np.mean(s_eval > sc.threshold)),
                    "cvc_test_detection": float(np.mean(s_test > sc.threshold)),
                    "cvc_dev_detection": float(np.mean(s_dev > sc.threshold)),
                    "auroc_site_vs_cvc_test": auroc(s_eval, s_test),
                    "select_auroc_holdback_vs_cvc_dev": auroc(sc.score(hold_x), s_dev),
                    "hk_id_false_alerts": float(np.mean(sc.score(data.test) > sc.threshold)),
                    "auroc_hk_id_vs_hk_polyp": auroc(sc.score(data.test), sc.score(data.hk_polyp)),
                    "drift_raises_on_site_eval": count_raises(s_eval > sc.threshold, d),
                    "site_eval_frames": int(len(eval_x)),
                    "_eval_scores": s_eval - sc.threshold, "_cvc_scores": s_test - sc.threshold,
                })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/results/domain-shift"))
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    from .domain_shift_report import write_report  # matplotlib only when reporting

    started = time.time()
    data = load_data(args.cache_dir)
    methods = fitted_methods(data)
    split = load_split(DEFAULT_SPLIT)
    drift = drift_rows(data, methods, split.labels("test"))
    enroll = enrollment_rows(data, methods, pooled_folds(data))
    per_centre = enrollment_rows(data, methods, centre_folds(data))
    write_report(args.out, data, drift, enroll, per_centre, time.time() - started)
    print(f"wrote {args.out}/report.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
