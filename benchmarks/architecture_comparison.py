"""Classifier architectures side by side over split seeds (issue 13: "report per architecture"): the tables of
docs/results/architecture-comparison.md below its marker line, read from committed `eval --seeds` reports only.

    python benchmarks/architecture_comparison.py [--seed-reports results/seeds-e20-lite2]

--seed-reports first copies each Lite2 seed's validation AUROCs (seed-N/report.json of the `eval --seeds` run)
into the committed PER_SEED file, which the paired per-seed comparison reads beside Lite0's per-seed validation
numbers of the block-statistics sweep (docs/results/block-stats-sweep/sweep.json, the same quantity).

Inputs: one five-seed report per architecture (REPORTS), each made by `stream-monitor eval --dev-benchmark
--seeds 0,1,2,3,4 --arch A ...` with the same split seeds, recipe (paper augmentation, 20 epochs,
`--stop-when-final`) and OOD sets. The architecture is chosen by validation numbers only (RULE), written
down before any number of the new architecture existed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORTS = {"efficientnet_lite0": ROOT / "docs/results/dev-benchmark-seeds-e20/report.json",
           "efficientnet_lite2": ROOT / "docs/results/dev-benchmark-seeds-e20-lite2/report.json"}
PER_SEED = ROOT / "docs/results/dev-benchmark-seeds-e20-lite2/validation_per_seed.json"
LITE0_SWEEP = ROOT / "docs/results/block-stats-sweep/sweep.json"
SWEEP_NAME = "z(neco)+z(bstats block 5)"  # the sweep's name for the shipped fusion
BUNDLED = "efficientnet_lite0"
SHIPPED = "fusion z(neco)+z(bstats)"
METHODS = (SHIPPED, "block_stats_mahalanobis", "fusion z(nero-r)+z(neco)+z(bstats)", "fusion z(nero-r)+z(neco)",
           "neco", "nero_default", "nero_parity")
SETS = ("hk-all-ood", "hk-impacted-stool", "cvc-clinicdb-polyps", "polypgen-positive-A", "polypgen-positive-B",
        "polypgen-positive-C", "polypgen-normal (shift)")
MARKER = "<!-- tables below: written by python benchmarks/architecture_comparison.py -->"
RULE = ("each architecture's own cross-seed rule picks its detector (highest mean validation AUROC over the five "
        "seeds); the architecture whose pick has the higher mean validation AUROC wins; a tie (equal at the 0.1 % the "
        f"reports print) keeps the bundled architecture ({BUNDLED}). Validation = ID validation images vs the "
        "validation part of the HyperKvasir OOD classes; no test image is read by the rule")


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def load(arch: str) -> dict:
    return json.loads(REPORTS[arch].read_text())


def verdict(reports: dict[str, dict]) -> tuple[str, dict[str, tuple[str, float]]]:
    picks = {}
    for arch, report in reports.items():
        chosen = report["selection"]["chosen"]
        picks[arch] = (chosen, report["selection"]["candidates"][chosen]["auroc"])
    best = max(picks, key=lambda a: round(100 * picks[a][1], 1))
    if round(100 * picks[best][1], 1) == round(100 * picks[BUNDLED][1], 1):
        best = BUNDLED
    return best, picks


def save_per_seed(seed_reports: Path) -> None:
    per_seed = {}
    for folder in sorted(seed_reports.glob("seed-*")):
        validation = json.loads((folder / "report.json").read_text())["validation"]
        per_seed[folder.name.removeprefix("seed-")] = {m: v["auroc"] for m, v in validation.items()
                                                       if isinstance(v, dict) and "auroc" in v}
    PER_SEED.write_text(json.dumps(per_seed, indent=1, sort_keys=True) + "\n")


def paired(method: str = SHIPPED) -> list[str]:
    """The shipped fusion's validation AUROC per split seed, Lite0 vs Lite2 (same splits: a paired comparison)."""
    sweep = json.loads(LITE0_SWEEP.read_text())
    lite0 = dict(zip(sweep["seeds"].split(","), sweep["validation"][SWEEP_NAME]["auroc"]))
    lite2 = {seed: row[method] for seed, row in json.loads(PER_SEED.read_text()).items()}
    seeds = sorted(set(lite0) & set(lite2), key=int)
    lines = ["", f"Paired by split seed, validation AUROC of `{method}`:", "",
             "| seed | efficientnet_lite0 | efficientnet_lite2 | difference |", "|---|---:|---:|---:|"]
    lines += [f"| {s} | {pct(lite0[s])} | {pct(lite2[s])} | {pct(lite0[s] - lite2[s])} |" for s in seeds]
    ahead = sum(lite0[s] > lite2[s] for s in seeds)
    lines += ["", f"Lite0 ahead on {ahead} of {len(seeds)} seeds.", ""]
    return lines


def tables(reports: dict[str, dict]) -> list[str]:
    winner, picks = verdict(reports)
    lines = ["## Validation (the rule reads only this)", "", f"Rule: {RULE}.", "",
             "| architecture | method | validation AUROC (mean ± std) | validation FPR95 (mean) |", "|---|---|---:|---:|"]
    for arch, report in reports.items():
        candidates = report["selection"]["candidates"]
        for method in METHODS:
            if method in candidates:
                c = candidates[method]
                mark = " (its pick)" if method == picks[arch][0] else ""
                lines.append(f"| {arch} | {method}{mark} | {pct(c['auroc'])} ± {pct(c['auroc_std'])} | {pct(c['fpr95'])} |")
    lines += ["", f"**Verdict by the rule: {winner}** (" + "; ".join(
        f"{arch}: `{method}` {pct(auroc)}" for arch, (method, auroc) in picks.items()) + ").", ""]
    lines += paired()
    lines += ["## Test sets (reported, never read by the rule)", "",
              "AUROC / FPR95 (%, paper convention), mean ± std over the five seeds.", "",
              "| architecture | method | " + " | ".join(SETS) + " |", "|---|---|" + "---|" * len(SETS)]
    for arch, report in reports.items():
        for method in METHODS:
            row = report["results"].get(method)
            if row is None:
                continue
            cells = [f"{pct(row[s]['auroc'])} ± {pct(row[s]['auroc_std'])} / {pct(row[s]['fpr95'])} ± "
                     f"{pct(row[s]['fpr95_std'])}" if s in row else "—" for s in SETS]
            lines.append(f"| {arch} | {method} | " + " | ".join(cells) + " |")
    lines += ["", "Per seed (best epoch, validation and ID test accuracy):", ""]
    for arch, report in reports.items():
        per_seed = report["meta"]["per_seed"]
        lines.append(f"- {arch}: " + "; ".join(
            f"seed {s}: val {v['best_val_accuracy']:.3f}, test {v['id_test_accuracy']:.3f}" for s, v in per_seed.items()))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed-reports", type=Path, help="the Lite2 `eval --seeds` output folder (seed-N/report.json)")
    args = parser.parse_args()
    if args.seed_reports:
        save_per_seed(args.seed_reports)
    reports = {arch: load(arch) for arch in REPORTS}
    doc = ROOT / "docs/results/architecture-comparison.md"
    head = doc.read_text().split(MARKER)[0] if doc.exists() else "# Architectures compared over five split seeds\n\n"
    doc.write_text(head.rstrip("\n") + "\n\n" + MARKER + "\n\n" + "\n".join(tables(reports)) + "\n")
    print(f"written {doc.relative_to(ROOT)}; verdict: {verdict(reports)[0]}")


if __name__ == "__main__":
    main()
