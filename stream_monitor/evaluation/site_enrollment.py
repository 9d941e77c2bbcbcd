"""Site enrollment measured per hospital: does the enrolled site model keep pathology detection?

Protocol (issue 14), per PolypGen centre A, B, C:
- the centre's no-polyp sequences are split by sequence, never by frame: every split with ≥ 2
  sequences to enroll and ≥ 1 held apart (A: 10 splits, B and C: 3 each);
- `enroll_site` (stream_monitor.site) builds the site model and its threshold from the enroll
  sequences only (cross-fitted, one group per sequence);
- measured: false alerts = share of the held-apart normal sequences' frames flagged; polyps flagged =
  share of the centre's 125 polyp frames flagged; both at the threshold enrollment set.
- before: the bundled NERO detector at its shipped threshold; `nero-threshold`: NERO with its threshold
  moved to the enrolled footage (what `stream-monitor enroll --procedure threshold` did until now).
HyperKvasir as a fourth "site" (enroll on the split's ID train images in 5 random groups, held apart:
ID test, polyps: the split's polyp class) checks that enrollment also keeps working in-domain.

Choices (backbone, frame score top-k, fusion rule, whether specular-highlight cells count) are made per reported centre by leave-one-centre-out:
among the grid, the configuration with the highest worst-centre polyp rate whose mean false-alert rate is
≤ 10 % on every OTHER PolypGen centre. The full grid is in the results too.

Distances are computed once per group memory and combined by minimum (the union of group memories'
nearest neighbour is the minimum over groups), which is exactly what enroll_site computes.

    python -m stream_monitor.evaluation.site_enrollment --out docs/results/site-enrollment
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ..site.calibration import evidence_fired, fuse, p_values
from ..site.patch_memory import frame_score, specular_cells
from ..site.site_model import SiteOptions, group_memories
from .ood_metrics import auroc
from .site_features import BACKBONES, CACHE_DIR, CENTRES, FrameArrays, cached_model_rgb, frame_groups, load_group

TOP_KS = (1, 10, 50)
SPECULAR = {"all-cells": None, "no-specular": 0.1}  # cells: SiteOptions.specular_cover
RULES = ("site", "min", "fisher", "nero-threshold")
ALPHA = 0.05
FA_LIMIT, POLYP_TARGET = 0.10, 0.60
HK_GROUPS = 5


def _distances(enroll_groups, queries, options, cache: Path):
    """Per group memory: (n_query, h, w) distance maps of every query block. enroll_groups and queries are
    lists of FrameArrays; returns dist[q][g]. Cached in `cache` (the options are in its name)."""
    if cache.is_file():
        with np.load(cache) as data:
            return [[data[f"{q}_{g}"] for g in range(len(enroll_groups))] for q in range(len(queries))]
    memories = group_memories([g.maps for g in enroll_groups], [g.valid for g in enroll_groups], options)
    dist = [[m.distances(q.maps.astype(np.float32)) for m in memories] for q in queries]
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **{f"{q}_{g}": d for q, row in enumerate(dist) for g, d in enumerate(row)})
    return dist


def _site_rates(dist, valid, nero, enroll, held, polyp_index, top_k, rule, before_threshold):
    """False-alert and polyp rates for one split. dist[q][g]: maps of query block q against group g."""
    cal_site, cal_nero = [], []
    for e in enroll:
        others = [g for g in enroll if g != e]
        maps = np.minimum.reduce([dist[e][g] for g in others])
        cal_site.append(frame_score(maps, valid[e], top_k))
        cal_nero.append(nero[e])
    cal_site, cal_nero = np.concatenate(cal_site), np.concatenate(cal_nero)
    cal_site = cal_site[np.isfinite(cal_site)]

    def flagged(q):
        site = frame_score(np.minimum.reduce([dist[q][g] for g in enroll]), valid[q], top_k)
        if rule == "nero-threshold":
            return p_values(cal_nero, nero[q]) < ALPHA, None
        p_site, p_nero = p_values(cal_site, site), p_values(cal_nero, nero[q])
        fused = fuse(p_site, p_nero, rule)
        fired = evidence_fired(p_site, p_nero, rule, ALPHA)
        return np.nan_to_num(fused, nan=1.0) < ALPHA, fired

    held_flags = np.concatenate([flagged(q)[0] for q in held])
    polyp_flags, fired = flagged(polyp_index)
    held_site = np.concatenate([frame_score(np.minimum.reduce([dist[q][g] for g in enroll]), valid[q], top_k) for q in held])
    polyp_site = frame_score(np.minimum.reduce([dist[polyp_index][g] for g in enroll]), valid[polyp_index], top_k)
    finite = np.isfinite(held_site)
    ranking = {"site_auroc": auroc(held_site[finite], polyp_site[np.isfinite(polyp_site)]),
               "nero_auroc": auroc(np.concatenate([nero[q] for q in held]), nero[polyp_index])}
    evidence = {}
    if fired is not None:
        for kind in ("site", "nero"):
            evidence[kind] = float(np.mean([kind in f for f, hit in zip(fired, polyp_flags) if hit])) if polyp_flags.any() else 0.0
    return {"false_alerts": float(held_flags.mean()), "polyps_flagged": float(polyp_flags.mean()),
            "held_frames": int(len(held_flags)), "polyp_evidence": evidence, **ranking}


def _splits(n: int, site: str):
    if site == "hk":
        return [(tuple(range(HK_GROUPS)), (HK_GROUPS,))]
    out = []
    for size in range(2, n):
        for enroll in itertools.combinations(range(n), size):
            out.append((enroll, tuple(i for i in range(n) if i not in enroll)))
    return out


def _site_blocks(site: str, backbone: str, groups):
    """(normal blocks, polyp block) FrameArrays for a site."""
    if site == "hk":
        train = load_group("hk/id-train", backbone, groups["hk/id-train"])
        order = np.random.default_rng(0).permutation(len(train.names))
        parts = np.array_split(order, HK_GROUPS)
        normal = [FrameArrays(train.maps[p], train.valid[p], train.nero[p], tuple(train.names[i] for i in p)) for p in parts]
        normal.append(load_group("hk/id-test", backbone, groups["hk/id-test"]))
        return normal, load_group("hk/polyp", backbone, groups["hk/polyp"])
    normal = [load_group(f"{site}/{seq}", backbone, groups[f"{site}/{seq}"]) for seq in CENTRES[site]]
    return normal, load_group(f"{site}/polyp", backbone, groups[f"{site}/polyp"])


def _without_specular(site: str, blocks, groups, cover: float):
    """A PolypGen centre's blocks with specular-highlight cells dropped from `valid` (site_model's
    specular_cover; images from the rgb cache)."""
    names = [f"{site}/{seq}" for seq in CENTRES[site]] + [f"{site}/polyp"]
    out = []
    for name, block in zip(names, blocks):
        specular = specular_cells(cached_model_rgb(name, groups[name]), *block.valid.shape[-2:], cover)
        out.append(FrameArrays(block.maps, block.valid & ~specular, block.nero, block.names))
    return out


def evaluate(options: SiteOptions, before_threshold: float, sites=(*CENTRES, "hk")) -> dict:
    groups = frame_groups()
    results: dict = {}
    for site, backbone, cells in itertools.product(sites, BACKBONES, SPECULAR):
        if site == "hk" and SPECULAR[cells] is not None:
            continue
        normal, polyp = _site_blocks(site, backbone, groups)
        if SPECULAR[cells] is not None:
            *normal, polyp = _without_specular(site, [*normal, polyp], groups, SPECULAR[cells])
        blocks = [*normal, polyp]
        t0 = time.time()
        # memories are per normal block; every split's enroll set is a subset of them
        name = f"{site}-{backbone}-f{options.coreset_fraction}-max{options.max_coreset}-seed{options.seed}" \
            + ("" if SPECULAR[cells] is None else f"-specular{SPECULAR[cells]}") + ".npz"
        dist = _distances(normal, blocks, options, CACHE_DIR / "distances" / name)
        elapsed = time.time() - t0
        valid = [b.valid for b in blocks]
        nero = [b.nero for b in blocks]
        polyp_index = len(blocks) - 1
        before_fa = float(np.mean(np.concatenate([b.nero for b in normal]) > before_threshold))
        before_polyp = float(np.mean(polyp.nero > before_threshold))
        for top_k, rule in itertools.product(TOP_KS, RULES):
            if rule == "nero-threshold" and (top_k != TOP_KS[0] or SPECULAR[cells] is not None):
                continue
            runs = [{"enroll": list(e), "held": list(h),
                     **_site_rates(dist, valid, nero, list(e), list(h), polyp_index, top_k, rule, before_threshold)}
                    for e, h in _splits(len(normal), site)]
            key = f"{site}|{backbone}|{cells}|top{top_k}|{rule}"
            results[key] = {
                "site": site, "backbone": backbone, "cells": cells, "top_k": top_k, "rule": rule, "splits": runs,
                "false_alerts_mean": float(np.mean([r["false_alerts"] for r in runs])),
                "false_alerts_max": float(np.max([r["false_alerts"] for r in runs])),
                "polyps_flagged_mean": float(np.mean([r["polyps_flagged"] for r in runs])),
                "polyps_flagged_min": float(np.min([r["polyps_flagged"] for r in runs])),
                "site_auroc_mean": float(np.mean([r["site_auroc"] for r in runs])),
                "nero_auroc_mean": float(np.mean([r["nero_auroc"] for r in runs])),
                "before": {"false_alerts": before_fa, "polyps_flagged": before_polyp},
                "distance_seconds": elapsed}
        print(f"{site} {backbone} {cells}: distances {elapsed:.1f} s", flush=True)
    return results


def pick_on_other_centres(candidates, rates, held_out: str):  # type: ignore[no-untyped-def]
    """The leave-one-centre-out rule for reporting `held_out`: among `candidates` whose mean false alerts are
    ≤ FA_LIMIT on every OTHER centre, the one with the highest worst-centre polyp share (the first one on a
    tie; None if no candidate qualifies). `rates(centre, candidate)` → (false alerts, polyps flagged)."""
    others = [c for c in CENTRES if c != held_out]
    best, best_value = None, -1.0
    for candidate in candidates:
        pairs = [rates(c, candidate) for c in others]
        if all(fa <= FA_LIMIT for fa, _ in pairs) and min(tp for _, tp in pairs) > best_value:
            best, best_value = candidate, min(tp for _, tp in pairs)
    return best


def choose(results: dict, held_out: str) -> str:
    """Leave-one-centre-out choice of (backbone, cells, top-k, rule) for reporting `held_out` (see module doc)."""
    configs = sorted({key.split("|", 1)[1] for key in results if not key.endswith("nero-threshold")})
    best = pick_on_other_centres(configs, lambda c, config: (results[f"{c}|{config}"]["false_alerts_mean"],
                                                            results[f"{c}|{config}"]["polyps_flagged_mean"]),
                                 held_out)
    return best or configs[0]


def write_report(results: dict, options: SiteOptions, out: Path, command: str) -> None:
    chosen = {c: choose(results, c) for c in CENTRES}
    lines = ["# Site enrollment per hospital: false alerts and polyps flagged at the enrolled threshold", "",
             f"Regenerate: `{command}` (features cached in .cache/site-enrollment/).", "",
             "Protocol: stream_monitor/evaluation/site_enrollment.py (module docstring). Enroll on a centre's no-polyp "
             "sequences, hold the others apart (every split by sequence: A 10, B 3, C 3), threshold set by "
             f"enrollment alone (cross-fitted conformal p < {ALPHA}); false alerts on the held-apart normal "
             "frames, polyps = the centre's 125 polyp frames. Mean over splits (worst split in brackets).", "",
             "## Chosen per centre by leave-one-centre-out (chosen on the other two centres)", "",
             "| centre | chosen (backbone, cells, top-k, fusion) | before: false alerts / polyps | NERO threshold enrolled | "
             "site model enrolled: false alerts / polyps | AUROC held-apart normal vs polyps: site / NERO | target met |",
             "|---|---|---|---|---|---|---|"]
    for c, config in chosen.items():
        r = results[f"{c}|{config}"]
        nt = results[f"{c}|{config.split('|')[0]}|all-cells|top{TOP_KS[0]}|nero-threshold"]
        met = r["false_alerts_mean"] <= FA_LIMIT and r["polyps_flagged_mean"] >= POLYP_TARGET
        lines.append(f"| {c} | {config.replace('|', ', ')} | {r['before']['false_alerts']:.0%} / {r['before']['polyps_flagged']:.0%} "
                     f"| {nt['false_alerts_mean']:.0%} / {nt['polyps_flagged_mean']:.0%} "
                     f"| {r['false_alerts_mean']:.1%} (max {r['false_alerts_max']:.1%}) / {r['polyps_flagged_mean']:.1%} "
                     f"(min {r['polyps_flagged_min']:.1%}) | {r['site_auroc_mean']:.2f} / {r['nero_auroc_mean']:.2f} "
                     f"| {'yes' if met else 'no'} |")
    lines += ["", "## Full grid (mean over splits: false alerts / polyps flagged)", "",
              "| site | backbone | cells | top-k | fusion | false alerts (max) | polyps flagged (min) | site AUROC | "
              "polyp alerts with site / NERO evidence |",
              "|---|---|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        ev = r["splits"][0]["polyp_evidence"]
        evs = f"{ev.get('site', 0):.0%} / {ev.get('nero', 0):.0%}" if ev else "—"
        lines.append(f"| {r['site']} | {r['backbone']} | {r['cells']} | {r['top_k'] if r['rule'] != 'nero-threshold' else '—'} "
                     f"| {r['rule']} "
                     f"| {r['false_alerts_mean']:.1%} ({r['false_alerts_max']:.1%}) | {r['polyps_flagged_mean']:.1%} "
                     f"({r['polyps_flagged_min']:.1%}) | {r['site_auroc_mean']:.2f} | {evs} |")
    lines += ["", f"Options: {json.dumps(options.__dict__)}. `hk` = HyperKvasir as a site (enroll: ID train in "
              f"{HK_GROUPS} random groups; held apart: ID test; polyps: the split's polyp class). "
              "Evidence column: of the polyp frames flagged (first split), the share whose site / NERO p-value was "
              "itself below the rule's level.", "",
              f"Hardware: {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps({"options": options.__dict__, "alpha": ALPHA, "chosen": chosen,
                                                  "results": results}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/results/site-enrollment"))
    parser.add_argument("--coreset-fraction", type=float, default=SiteOptions.coreset_fraction)
    parser.add_argument("--max-coreset", type=int, default=SiteOptions.max_coreset, help="per recording")
    parser.add_argument("--with-hyperkvasir", action="store_true",
                        help="also HyperKvasir as a site (about 20 min more on this 2-core CPU)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from .. import bundled
    from ..nero import NeroDetector

    before = NeroDetector.load(bundled.DETECTOR).threshold
    options = SiteOptions(coreset_fraction=args.coreset_fraction, max_coreset=args.max_coreset)
    results = evaluate(options, before, (*CENTRES, "hk") if args.with_hyperkvasir else tuple(CENTRES))
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(results, options, args.out,
                 f"python -m stream_monitor.evaluation.site_enrollment --out {args.out} --coreset-fraction {args.coreset_fraction} "
                 f"--max-coreset {args.max_coreset}" + (" --with-hyperkvasir" if args.with_hyperkvasir else ""))
    print((args.out / "report.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
