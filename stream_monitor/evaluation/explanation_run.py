"""Measure explanation maps on the polyp masks: every map family, settings chosen on the "select" part,
numbers reported on the "report" part (evaluation/explanation_data.py says how the parts are drawn).

    python -m stream_monitor.evaluation.explanation_run --out docs/results/explanations

Writes maps.json (every family's chosen settings, its measures per set and part, the candidates it
was chosen from) and README.md (the report part as a table). Families whose settings are fixed (the
current deviation heatmap, Grad-CAM, the score decomposition) have one candidate, so nothing is chosen
for them; the centre prior's width and the patch map's settings are chosen by the select part's
pointing game (mean over the two sets; AUROC breaks ties).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import bundled
from ..data.images import read_image
from ..explanations.maps import centre_prior, gradcam_map, residual_decomposition
from ..models.registry import load_classifier
from ..nero import NeroDetector
from ..nero.heatmap import deviation_heatmap
from ..preprocess import normalize_uint8, to_model_rgb
from .explanation_data import MASKED_SETS, Frame, MapFamily, load_masked_set, read_mask, split_parts
from .explanation_metrics import GRID, score_map, summarise

__all__ = ["baseline_families", "load_frames", "measure", "select_and_report"]

LIVE_TOP_NEURONS = 5  # the live monitor's default (config.py: inference.top_neurons)


def load_frames(data_root: Path, model, detector: NeroDetector, batch: int = 16,
                cache: Path | None = Path(".cache") / "explanations") -> list[Frame]:
    """Every masked image of both sets, run through the model once (cached on disk by model and detector)."""
    listed = [(set_name, part, item) for set_name in MASKED_SETS
              for part, items in split_parts(load_masked_set(set_name, data_root)).items() for item in items]
    key = hashlib.sha1(("|".join(f"{s}/{i.name}" for s, _, i in listed) + bundled_fingerprint(model, detector)).encode())
    path = cache / f"frames-{key.hexdigest()[:12]}.npz" if cache else None
    if path is not None and path.exists():
        stored = dict(np.load(path))
    else:
        stored = {"rgb": [], "feature_map": [], "predicted": [], "top": [], "dev": []}
        for start in range(0, len(listed), batch):
            chunk = listed[start:start + batch]
            rgb = np.stack([to_model_rgb(read_image(item.image_path)) for _, _, item in chunk])
            with torch.inference_mode():
                _, features, feature_map = model(torch.from_numpy(normalize_uint8(rgb)))
            exp = detector.explain(features.double().numpy(), top_n=LIVE_TOP_NEURONS)
            for name, value in (("rgb", rgb), ("feature_map", feature_map.numpy()),
                                ("predicted", exp.parts.probs.argmax(axis=1)), ("top", exp.top_neurons),
                                ("dev", exp.deviations)):
                stored[name].append(value)
        stored = {k: np.concatenate(v) for k, v in stored.items()}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, **stored)
    return [Frame(item.name, set_name, part, read_mask(item.mask_path), normalize_uint8(stored["rgb"][i]),
                  stored["rgb"][i], stored["feature_map"][i], int(stored["predicted"][i]), stored["top"][i],
                  stored["dev"][i]) for i, (set_name, part, item) in enumerate(listed)]


def bundled_fingerprint(model, detector: NeroDetector) -> str:
    """What the cached frames depend on: every model weight and the detector's fitted state."""
    from .. import artifact
    from ..data.features import model_fingerprint

    arrays = detector.fitted_arrays()
    return model_fingerprint(model) + "".join(artifact.array_sha256(arrays[k]) for k in sorted(arrays))


def baseline_families(detector: NeroDetector) -> list[MapFamily]:
    """The maps a new one must beat: the live heatmap, Grad-CAM, the exact score decomposition and the
    centre prior (width chosen on the select part)."""
    weight = detector.fitted_arrays()["weight"]
    return [
        MapFamily("deviation heatmap (current live map)",
                  lambda f: deviation_heatmap(f.feature_map, f.top_neurons, f.deviations)),
        MapFamily("Grad-CAM (predicted class)", lambda f: gradcam_map(f.feature_map, weight, f.predicted)),
        MapFamily("score decomposition (relevance residual over 7x7 locations)",
                  lambda f: residual_decomposition(f.feature_map, detector)),
        MapFamily("centre prior (Gaussian)", lambda f, sigma: centre_prior(56, 56, sigma),
                  tuple({"sigma": s} for s in (0.1, 0.15, 0.2, 0.3, 0.5))),
    ]


def measure(frames: Iterable[Frame], make: Callable[[Frame], np.ndarray]) -> dict[str, dict[str, dict]]:
    """{set: {part: summary}} of one map over the frames."""
    scores: dict[tuple[str, str], list] = {}
    for frame in frames:
        scores.setdefault((frame.set_name, frame.part), []).append(score_map(make(frame), frame.mask))
    out: dict[str, dict[str, dict]] = {}
    for (set_name, part), values in sorted(scores.items()):
        out.setdefault(set_name, {})[part] = summarise(values)
    return out


def _selection_key(result: dict[str, dict[str, dict]]) -> tuple[float, float]:
    select = [result[s]["select"] for s in result]
    return (float(np.mean([r["pointing_game"] for r in select])), float(np.mean([r["auroc_inside"] for r in select])))


def select_and_report(frames: list[Frame], family: MapFamily) -> dict[str, Any]:
    """Measure every candidate on the select part; keep the one it prefers; measure that one on both
    parts (its report part is the result)."""
    select = [f for f in frames if f.part == "select"]
    tried = []
    for settings in family.candidates:
        result = measure(select, lambda f, s=settings: family.make(f, **s))
        tried.append({"settings": settings, "select_key": _selection_key(result)})
        print(f"  {family.name} {settings}: select pointing game, AUROC {tried[-1]['select_key']}", flush=True)
    best = max(tried, key=lambda t: t["select_key"])
    measures = measure(frames, lambda f: family.make(f, **best["settings"]))
    return {"family": family.name, "chosen": best["settings"], "measures": measures, "candidates": tried}


def _table(results: list[dict]) -> str:
    lines = ["| map | set | n | pointing game | mass inside (mask share) | mass lift | AUROC inside |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        for set_name, parts in r["measures"].items():
            m = parts["report"]
            lines.append(f"| {r['family']} | {set_name} | {m['n']} | {m['pointing_game']:.1%} | "
                         f"{m['mass_inside']:.1%} ({m['mask_share']:.1%}) | {m['mass_lift']:.2f} | "
                         f"{m['auroc_inside']:.3f} |")
    return "\n".join(lines)


def write_report(out: Path, results: list[dict], frames: list[Frame], command: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    groups = {s: {p: sorted({f.name.split("/")[0] for f in frames if f.set_name == s and f.part == p})
                  for p in ("select", "report")} for s in MASKED_SETS}
    payload = {"command": command, "grid": GRID, "torch": torch.__version__, "results": results,
               "parts": {s: {p: len(v) for p, v in g.items()} for s, g in groups.items()},
               "cvc_sequences": groups["cvc-clinicdb"]}
    (out / "maps.json").write_text(json.dumps(payload, indent=1) + "\n")
    text = (f"# Explanation maps against polyp masks\n\nRegenerate: `{command}`\n\n"
            "Report part only (settings were chosen on the disjoint select part: half the HyperKvasir polyps "
            f"by a seeded split, half the CVC-ClinicDB sequences by sequence). Measures on a {GRID}x{GRID} grid: "
            "pointing game = the map's maximum inside the mask; mass inside = share of the map's positive mass "
            "inside the mask (mask share = what a flat map gets); mass lift = their ratio per image, averaged; "
            "AUROC inside = map values inside vs outside the mask, per image, averaged.\n\n"
            + _table(results) + "\n\nChosen settings: "
            + "; ".join(f"{r['family']}: {r['chosen'] or 'fixed'}" for r in results) + "\n\n" + _verdict(payload) + "\n")
    (out / "README.md").write_text(text)


MEASURE_NAMES = {"pointing_game": "pointing game", "mass_lift": "mass lift", "auroc_inside": "AUROC"}


def losses_to_baselines(payload: dict, family: str) -> list[str]:
    """Where `family` (report part) does not beat a baseline map: '<set> <measure> ≤ <baseline>' each."""
    from ..explanations.assets import BASELINE_FAMILIES, MEASURES

    results = {r["family"]: r for r in payload["results"]}
    mine = results[family]["measures"]
    lost = []
    for name, other in results.items():
        if not name.startswith(BASELINE_FAMILIES):
            continue
        for set_name, parts in mine.items():
            theirs = other["measures"][set_name]["report"]
            lost += [f"{set_name} {MEASURE_NAMES[m]} {parts['report'][m]:.3g} ≤ {theirs[m]:.3g} ({name})"
                     for m in MEASURES if parts["report"][m] <= theirs[m]]
    return lost


def _verdict(payload: dict) -> str:
    from ..explanations.assets import (
        BASELINE_FAMILIES,
        SCENE_MAP_NAME,
        validated_patch_settings,
        validated_scene_settings,
    )

    lines = []
    for r in payload["results"]:
        if r["family"].startswith(BASELINE_FAMILIES):
            continue
        lost = losses_to_baselines(payload, r["family"])
        lines.append(f"- {r['family']}: " + ("beats every baseline map on all three measures in both sets" if not lost
                                              else "does NOT beat every baseline: " + "; ".join(lost)))
    settings, scene = validated_patch_settings(payload), validated_scene_settings(payload)
    if settings is not None:
        live = f"the patch map beats every other map on all three measures in both sets; it goes live ({settings})."
    elif scene is not None:
        live = (f"the {SCENE_MAP_NAME} beats every baseline map on all "
                f"three measures in both sets; it goes live on the frames that alert ({scene}; python -m "
                "stream_monitor.explanations.assets --scene-map auto), the channel-deviation heatmap stays on the others.")
    else:
        live = ("the live heatmap stays (python -m stream_monitor.explanations.assets includes the patch map only when "
                "it beats every other map, the scene map only when it beats every baseline map, on all three "
                "measures in both sets).")
    return "Verdict against the baselines (report part):\n\n" + "\n".join(lines) + "\n\nLive: " + live


def bundled_run(description: str, argv: list[str] | None) -> tuple[argparse.Namespace, Any, NeroDetector, list[Frame]]:
    """The command line of a measuring run (--data-root, --out) and what every family needs: the bundled
    model, its NERO detector and the masked frames (one thread, for repeatable timings and cache keys)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, _ = load_classifier(bundled.MODEL)
    weight, bias = model.head_arrays()
    detector = NeroDetector.load(bundled.DETECTOR, weight=weight, bias=bias)
    return args, model, detector, load_frames(args.data_root, model, detector)


def main(argv: list[str] | None = None) -> int:
    args, model, detector, frames = bundled_run(__doc__, argv)
    from .explanation_distinct import distinct_families
    from .explanation_patch import patch_families  # the patch memory (torch + its cache) only when asked

    patch = patch_families(model, detector, frames, args)
    # the memory's raw distance on the lit region (no smoothing, no offset), as a factor of a zero-shot map
    memory = {"backbone": "bundled", "layer": "blocks.2", "coreset": 500, "sigma": 0.0, "quantile": None}
    families = (baseline_families(detector) + patch
                + distinct_families(model, detector, frames, args, lambda f: patch[0].make(f, **memory)))
    results = []
    for family in families:
        results.append(select_and_report(frames, family))
        print(f"{family.name}: chosen {results[-1]['chosen']}", flush=True)
    command = "python -m stream_monitor.evaluation.explanation_run --out " + str(args.out)
    write_report(args.out, results, frames, command)
    print(_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
