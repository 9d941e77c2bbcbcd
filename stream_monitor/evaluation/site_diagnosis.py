"""Why the enrolled site model flags so few polyps: the score distributions, and what changes them.

Same protocol and splits as site_enrollment.py (enroll on some of a centre's no-polyp sequences, hold
the others apart, the centre's 125 polyp frames), the site score alone (top-10 patch distance, no
NERO), for each variant of the site model:

- `model`: the site model as first shipped (patches of the 224 × 224 image the classifier sees, every
  valid cell; the specular-highlight option is measured in site_enrollment.py's grid instead);
- `colon-crop`: the image cropped to the bounding box of the colon's pixels (valid_pixels) and resized
  back to 224 × 224 — the same framing for every recording (the scope crop leaves the side panel of
  some 1080p recordings in, and PolypGen's polyp frames come pre-cut in other sizes);
- `grey-world`: each frame's colours scaled so that its colon pixels have one fixed mean colour
  (removes the light source / white balance difference between recordings);
- `flip-memory`: the memory also holds the patches of the horizontally and vertically flipped enroll
  frames (more coverage of normal appearance from the same footage);
- `input-320`: the image upscaled to 320 × 320 (40 × 40 patch grid: a small polyp spans more patches);
- `intra-image` (zero-shot, no memory; after MuSc, ICLR 2024, within one frame): a patch's distance to the
  nearest patch of the same frame outside its 7 × 7-cell neighbourhood — a polyp should stand out from the
  surrounding mucosa whatever the site; calibrated on the enrolled frames' own scores;
- `block-calibration` (a calibration rule, not a feature): the threshold from cross-fitting over three
  contiguous blocks per enrolled sequence instead of whole sequences;
- `local-contrast` (a frame score, not a feature): the top-k patch distance minus the frame's median patch
  distance — a polyp is local, while a recording unlike the enrolled ones (light source, processor) raises
  every patch of its frames.

Per split it records the quantiles of the enroll-calibration scores (cross-fitted, what sets the
threshold), of the held-apart normal frames and of the polyps; false alerts and polyps flagged at the
enrolled threshold (conformal p < 0.05); the AUROC held-apart normal vs polyps; and, FOR DIAGNOSIS ONLY
(the threshold is read off the held-apart normal frames themselves, which enrollment never sees), the
share of polyps above the held-apart normals' 90th percentile ("oracle TPR at 10 % FPR"); and which
enrolled sequences `enroll` warns about as unlike the rest (site_model.unlike_groups).

Threshold sweep: the same splits with the threshold at other quantiles of the cross-fitted calibration
scores (THRESHOLD_QUANTILES; the shipped conformal rule sits near 0.95), and a leave-one-centre-out pick
of (variant, backbone, quantile): the highest worst-centre polyp share whose mean false alerts stay ≤ 10 %
on both OTHER centres, reported on the held-out centre. It asks whether any fixed rule on enrollment's own
scores lands near the oracle.

    python -m stream_monitor.evaluation.site_diagnosis --out docs/results/site-enrollment
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from ..preprocess import normalize_uint8
from ..site.calibration import p_values
from ..site.patch_memory import PatchFeatureExtractor, frame_score, valid_pixels, valid_region
from ..site.site_model import SiteOptions, group_memories, unlike_groups
from .ood_metrics import auroc
from .site_enrollment import ALPHA, FA_LIMIT, _splits, pick_on_other_centres
from .site_features import CACHE_DIR, CENTRES, cached_model_rgb, frame_groups

VARIANTS = ("model", "colon-crop", "grey-world", "flip-memory", "input-320", "block-calibration", "intra-image",
            "local-contrast")
SCORE_ONLY_VARIANTS = ("block-calibration", "intra-image", "local-contrast")  # on the `model` features
THRESHOLD_QUANTILES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
INTRA_RADIUS = 3  # cells (24 pixels): the neighbourhood a patch is NOT compared with in intra-image
TOP_K = 10
CALIBRATION_BLOCKS = 3
_GREY_WORLD_MEAN = np.array([0.6, 0.4, 0.35], np.float32) * 255  # a typical mucosa colour


def colon_crop(rgb: np.ndarray, size: int = 224) -> np.ndarray:
    region = valid_pixels(rgb)
    ys, xs = np.nonzero(region)
    if len(ys) < 100:
        return rgb
    crop = rgb[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR)


def grey_world(rgb: np.ndarray) -> np.ndarray:
    region = valid_pixels(rgb).astype(bool)
    if region.sum() < 100:
        return rgb
    mean = rgb[region].astype(np.float32).mean(0)
    return np.clip(rgb.astype(np.float32) * (_GREY_WORLD_MEAN / np.maximum(mean, 1.0)), 0, 255).astype(np.uint8)


def _view(variant: str, rgb: np.ndarray) -> np.ndarray:
    if variant == "colon-crop":
        return np.stack([colon_crop(x) for x in rgb])
    if variant == "grey-world":
        return np.stack([grey_world(x) for x in rgb])
    if variant == "input-320":
        return np.stack([cv2.resize(x, (320, 320), interpolation=cv2.INTER_LINEAR) for x in rgb])
    return rgb


def _maps(extractor: PatchFeatureExtractor, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    maps = np.concatenate([extractor(torch.from_numpy(normalize_uint8(rgb[i:i + 16]))).numpy()
                           for i in range(0, len(rgb), 16)])
    return maps.astype(np.float16), valid_region(rgb, *maps.shape[-2:])


def _features(group: str, files: list[Path], variant: str, backbone: str, extractor) -> dict[str, np.ndarray]:
    path = CACHE_DIR / "variants" / f"{variant}-{backbone}-{group.replace('/', '__')}.npz"
    if path.is_file():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    rgb = _view(variant, cached_model_rgb(group, files))
    out = dict(zip(("maps", "valid"), _maps(extractor, rgb)))
    if variant == "flip-memory" and not group.endswith("polyp"):
        for name, flipped in (("h", rgb[:, :, ::-1]), ("v", rgb[:, ::-1])):
            out[f"maps_{name}"], out[f"valid_{name}"] = _maps(extractor, np.ascontiguousarray(flipped))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def _memory_patches(block: dict, variant: str) -> tuple[np.ndarray, np.ndarray]:
    if variant != "flip-memory":
        return block["maps"], block["valid"]
    return (np.concatenate([block["maps"], block["maps_h"], block["maps_v"]]),
            np.concatenate([block["valid"], block["valid_h"], block["valid_v"]]))


def intra_image_distances(maps: np.ndarray, valid: np.ndarray, radius: int = INTRA_RADIUS) -> np.ndarray:
    """(B, h, w): each valid patch's distance to the nearest valid patch of its own frame farther than
    `radius` cells (Chebyshev); 0 on invalid cells (frame_score ignores them)."""
    b, c, h, w = maps.shape
    rows, cols = np.divmod(np.arange(h * w), w)
    near = np.maximum(np.abs(rows[:, None] - rows[None]), np.abs(cols[:, None] - cols[None])) <= radius
    out = np.zeros((b, h * w), np.float32)
    for i in range(b):
        flat = torch.from_numpy(np.ascontiguousarray(maps[i].reshape(c, -1).T, dtype=np.float32))
        d = torch.cdist(flat, flat).numpy()
        d[:, ~valid[i].reshape(-1)] = np.inf
        d[near] = np.inf
        nearest = d.min(1)
        out[i] = np.where(np.isfinite(nearest) & valid[i].reshape(-1), nearest, 0.0)
    return out.reshape(b, h, w)


def local_contrast_score(distance_maps: np.ndarray, valid: np.ndarray, top_k: int = TOP_K) -> np.ndarray:
    """(B,) the top-k patch distance minus the median patch distance over the frame's valid cells (NaN
    without any valid cell)."""
    maps = np.where(np.asarray(valid, bool), np.asarray(distance_maps, np.float64), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a frame without valid cells: NaN, as frame_score gives
        median = np.nanmedian(maps.reshape(len(maps), -1), axis=1)
    return frame_score(distance_maps, valid, top_k) - median


def _quantiles(x: np.ndarray) -> list[float]:
    x = x[np.isfinite(x)]
    return [round(float(v), 2) for v in np.quantile(x, [0.1, 0.5, 0.9])]


def _evaluate_centre(centre: str, variant: str, blocks: list[dict], options: SiteOptions) -> list[dict]:
    normal = blocks[:-1]
    # memory groups: whole sequences, or (block-calibration) contiguous thirds of each sequence
    if variant == "block-calibration":
        parts = [(s, idx) for s, b in enumerate(normal)
                 for idx in np.array_split(np.arange(len(b["valid"])), CALIBRATION_BLOCKS)]
    else:
        parts = [(s, np.arange(len(b["valid"]))) for s, b in enumerate(normal)]
    if variant == "intra-image":
        intra = [intra_image_distances(b["maps"], b["valid"]) for b in blocks]
    else:
        memory_inputs = [_memory_patches(normal[s], variant) if variant == "flip-memory"
                         else (normal[s]["maps"][idx], normal[s]["valid"][idx]) for s, idx in parts]
        memories = group_memories([m.astype(np.float32) for m, _ in memory_inputs], [v for _, v in memory_inputs],
                                  options)
        dist = [[m.distances(b["maps"].astype(np.float32)) for m in memories] for b in blocks]
    polyp_index = len(blocks) - 1
    score = local_contrast_score if variant == "local-contrast" else frame_score
    runs = []
    for enroll, held in _splits(len(normal), centre):
        groups = [g for g, (s, _) in enumerate(parts) if s in enroll]
        if variant == "intra-image":  # nothing is fitted on the enrolled frames: their scores calibrate directly
            by_group = [frame_score(intra[s], normal[s]["valid"], TOP_K) for s in enroll]
        else:
            by_group = [score(np.minimum.reduce([dist[parts[g][0]][o][parts[g][1]] for o in groups if o != g]),
                              normal[parts[g][0]]["valid"][parts[g][1]], TOP_K) for g in groups]
        calibration = np.concatenate(by_group)
        calibration = calibration[np.isfinite(calibration)]

        def site(q: int) -> np.ndarray:
            if variant == "intra-image":
                return frame_score(intra[q], blocks[q]["valid"], TOP_K)
            return score(np.minimum.reduce([dist[q][g] for g in groups]), blocks[q]["valid"], TOP_K)

        held_scores = np.concatenate([site(q) for q in held])
        polyp_scores = site(polyp_index)
        held_scores, polyp_scores = held_scores[np.isfinite(held_scores)], polyp_scores[np.isfinite(polyp_scores)]
        oracle = np.quantile(held_scores, 0.9)
        runs.append({"enroll": list(enroll), "held": list(held),
                     "false_alerts": float(np.mean(p_values(calibration, held_scores) < ALPHA)),
                     "polyps_flagged": float(np.mean(p_values(calibration, polyp_scores) < ALPHA)),
                     "auroc": auroc(held_scores, polyp_scores),
                     "oracle_tpr_at_10pct_fpr": float(np.mean(polyp_scores > oracle)),
                     "at_quantile": {str(q): [float(np.mean(held_scores > t)), float(np.mean(polyp_scores > t))]
                                     for q, t in zip(THRESHOLD_QUANTILES, np.quantile(calibration, THRESHOLD_QUANTILES))},
                     "unlike_groups": [enroll[g] for g in unlike_groups(by_group)] if variant != "block-calibration"
                     else None,
                     "quantiles_calibration": _quantiles(calibration), "quantiles_held": _quantiles(held_scores),
                     "quantiles_polyps": _quantiles(polyp_scores)})
    return runs


def evaluate(variants=VARIANTS, options: SiteOptions = SiteOptions()) -> dict:
    from .. import bundled
    from ..models.registry import load_classifier

    model, _ = load_classifier(bundled.MODEL)
    extractors = {"imagenet": PatchFeatureExtractor(None), "bundled": PatchFeatureExtractor(model)}
    groups = frame_groups()
    results = {}
    for variant in variants:
        feature_variant = "model" if variant in SCORE_ONLY_VARIANTS else variant
        for centre, sequences in CENTRES.items():
            names = [f"{centre}/{s}" for s in sequences] + [f"{centre}/polyp"]
            for backbone, extractor in extractors.items():
                t0 = time.time()
                blocks = [_features(n, groups[n], feature_variant, backbone, extractor) for n in names]
                runs = _evaluate_centre(centre, variant, blocks, options)
                mean = {k: float(np.mean([r[k] for r in runs]))
                        for k in ("false_alerts", "polyps_flagged", "auroc", "oracle_tpr_at_10pct_fpr")}
                at_quantile = {q: np.mean([r["at_quantile"][q] for r in runs], axis=0).tolist()
                               for q in runs[0]["at_quantile"]}
                results[f"{variant}|{centre}|{backbone}"] = {"variant": variant, "centre": centre, "backbone": backbone,
                                                              "splits": runs, **mean, "at_quantile": at_quantile}
                print(f"{variant} {centre} {backbone}: {json.dumps({k: round(v, 3) for k, v in mean.items()})} "
                      f"({time.time() - t0:.0f} s)", flush=True)
    return results


def choose_threshold_rule(results: dict, held_out: str) -> tuple[str, str, str] | None:
    """Leave-one-centre-out (site_enrollment.pick_on_other_centres) over every (variant, backbone, quantile)."""
    candidates = [(r["variant"], r["backbone"], q) for r in results.values()
                  if r["centre"] == next(c for c in CENTRES if c != held_out) for q in r["at_quantile"]]
    return pick_on_other_centres(
        candidates, lambda c, cand: tuple(results[f"{cand[0]}|{c}|{cand[1]}"]["at_quantile"][cand[2]]), held_out)


def _threshold_sweep_lines(results: dict) -> list[str]:
    quantiles = list(next(iter(results.values()))["at_quantile"])
    lines = ["", "## Threshold sweep: false alerts / polyps flagged at a quantile of the cross-fitted scores "
             "(mean over splits)", "",
             "| variant | centre | backbone | " + " | ".join(f"q = {q}" for q in quantiles) + " |",
             "|---|---|---|" + "---|" * len(quantiles)]
    for r in results.values():
        lines.append(f"| {r['variant']} | {r['centre']} | {r['backbone']} | "
                     + " | ".join(f"{fa:.0%} / {tp:.0%}" for fa, tp in r["at_quantile"].values()) + " |")
    lines += ["", "Leave-one-centre-out pick of (variant, backbone, quantile), chosen on the two other centres "
              f"(false alerts ≤ {FA_LIMIT:.0%} on both, then the highest worst-centre polyp share):", "",
              "| held-out centre | picked on the others | held-out centre: false alerts / polyps flagged |",
              "|---|---|---|"]
    for centre in CENTRES:
        pick = choose_threshold_rule(results, centre)
        if pick is None:
            lines.append(f"| {centre} | none keeps false alerts ≤ {FA_LIMIT:.0%} on both | — |")
            continue
        fa, tp = results[f"{pick[0]}|{centre}|{pick[1]}"]["at_quantile"][pick[2]]
        lines.append(f"| {centre} | {pick[0]}, {pick[1]}, q = {pick[2]} | {fa:.1%} / {tp:.1%} |")
    return lines


def write_report(results: dict, out: Path, command: str) -> None:
    lines = ["# Site model diagnosis: score distributions and variants", "",
             f"Regenerate: `{command}` (images and features cached in .cache/site-enrollment/).", "",
             "Module docstring of stream_monitor/evaluation/site_diagnosis.py for the protocol. Site score alone "
             f"(top-{TOP_K} patch distance, no NERO), mean over the splits of each centre (A 10, B 3, C 3). "
             "**Oracle TPR** = polyps above the held-apart normal frames' own 90th percentile: a diagnosis of "
             "the ranking only, not an operating point enrollment could set.", "",
             "## Variants (mean over splits)", "",
             "| variant | centre | backbone | false alerts at enrolled threshold | polyps flagged there | "
             "AUROC held-apart normal vs polyps | oracle TPR at 10 % FPR |", "|---|---|---|---|---|---|---|"]
    for r in results.values():
        lines.append(f"| {r['variant']} | {r['centre']} | {r['backbone']} | {r['false_alerts']:.1%} | "
                     f"{r['polyps_flagged']:.1%} | {r['auroc']:.2f} | {r['oracle_tpr_at_10pct_fpr']:.1%} |")
    lines += _threshold_sweep_lines(results)
    lines += ["", "## Score distributions of the `model` variant (every valid cell), per split (10th / 50th / 90th percentile)", "",
              "| centre | backbone | enroll → held apart | enroll calibration (sets the threshold) | held-apart normal "
              "| polyps | false alerts / polyps flagged | AUROC | oracle TPR | enroll warns: unlike sequences |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results.values():
        if r["variant"] != "model":
            continue
        for s in r["splits"]:
            lines.append(f"| {r['centre']} | {r['backbone']} | {s['enroll']} → {s['held']} | "
                         f"{' / '.join(map(str, s['quantiles_calibration']))} | {' / '.join(map(str, s['quantiles_held']))} "
                         f"| {' / '.join(map(str, s['quantiles_polyps']))} | {s['false_alerts']:.0%} / "
                         f"{s['polyps_flagged']:.0%} | {s['auroc']:.2f} | {s['oracle_tpr_at_10pct_fpr']:.0%} "
                         f"| {s['unlike_groups'] or '—'} |")
    (out / "diagnosis.md").write_text("\n".join(lines) + "\n")
    (out / "diagnosis.json").write_text(json.dumps({"alpha": ALPHA, "top_k": TOP_K, "results": results}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/results/site-enrollment"))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    variants = tuple(v for v in args.variants.split(",") if v)
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    results = evaluate(variants)
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(results, args.out, f"python -m stream_monitor.evaluation.site_diagnosis --out {args.out}"
                 + (f" --variants {args.variants}" if variants != VARIANTS else ""))
    print((args.out / "diagnosis.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
