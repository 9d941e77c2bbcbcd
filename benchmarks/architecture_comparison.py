"""Classifier studies side by side over split seeds (issue 13: "report per architecture", and a checkpoint chosen
by something that still moves after accuracy saturates): the tables of docs/results/architecture-comparison.md
below its marker line, read from committed files only.

    python benchmarks/architecture_comparison.py [--seed-reports STUDY=results/DIR ...]

A study is one classifier per split seed 0-4, all evaluated by `stream-monitor eval --dev-benchmark --seeds
0,1,2,3,4` with the same splits and OOD sets (STUDIES). --seed-reports first copies a study's per-seed validation
AUROCs (seed-N/report.json of its `eval --seeds` run) into its committed per-seed file, which the paired
comparison reads beside the bundled study's per-seed validation numbers from the block-statistics sweep
(docs/results/block-stats-sweep/sweep.json, the same quantity). Each study is compared with the bundled one by
validation numbers only (RULE), written down before any number of that study existed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# study -> its eval --seeds report folder (report.json; validation_per_seed.json beside it for the non-bundled)
STUDIES = {"efficientnet_lite0": ROOT / "docs/results/dev-benchmark-seeds-e20",
           "efficientnet_lite2": ROOT / "docs/results/dev-benchmark-seeds-e20-lite2",
           "efficientnet_lite0, val-loss checkpoint": ROOT / "docs/results/dev-benchmark-seeds-e20-valloss"}
LITE0_SWEEP = ROOT / "docs/results/block-stats-sweep/sweep.json"
SWEEP_NAME = "z(neco)+z(bstats block 5)"  # the sweep's name for the shipped fusion
BUNDLED = "efficientnet_lite0"
SHIPPED = "fusion z(neco)+z(bstats)"
METHODS = (SHIPPED, "block_stats_mahalanobis", "fusion z(nero-r)+z(neco)+z(bstats)", "fusion z(nero-r)+z(neco)",
           "neco", "nero_default", "nero_parity")
SETS = ("hk-all-ood", "hk-impacted-stool", "cvc-clinicdb-polyps", "polypgen-positive-A", "polypgen-positive-B",
        "polypgen-positive-C", "polypgen-normal (shift)")
MARKER = "<!-- tables below: written by python benchmarks/architecture_comparison.py -->"
RULE = ("each study's own cross-seed rule picks its detector (highest mean validation AUROC over the five "
        "seeds); a study replaces the bundled one only if its pick has the higher mean validation AUROC; a tie (equal "
        f"at the 0.1 % the reports print) keeps the bundled classifier ({BUNDLED}, paper checkpoint rule). "
        "Validation = ID validation images vs the validation part of the HyperKvasir OOD classes; no test image is "
        "read by the rule")


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def load(study: str) -> dict | None:
    path = STUDIES[study] / "report.json"
    return json.loads(path.read_text()) if path.exists() else None


def verdict(reports: dict[str, dict]) -> tuple[str, dict[str, tuple[str, float]]]:
    picks = {}
    for study, report in reports.items():
        chosen = report["selection"]["chosen"]
        picks[study] = (chosen, report["selection"]["candidates"][chosen]["auroc"])
    best = max(picks, key=lambda a: round(100 * picks[a][1], 1))
    if round(100 * picks[best][1], 1) == round(100 * picks[BUNDLED][1], 1):
        best = BUNDLED
    return best, picks


def save_per_seed(study: str, seed_reports: Path) -> None:
    per_seed = {}
    for folder in sorted(seed_reports.glob("seed-*")):
        validation = json.loads((folder / "report.json").read_text())["validation"]
        per_seed[folder.name.removeprefix("seed-")] = {m: v["auroc"] for m, v in validation.items()
                                                       if isinstance(v, dict) and "auroc" in v}
    (STUDIES[study] / "validation_per_seed.json").write_text(json.dumps(per_seed, indent=1, sort_keys=True) + "\n")


def paired(studies: list[str], method: str = SHIPPED) -> list[str]:
    """The shipped fusion's validation AUROC per split seed, the bundled study vs each other (same splits)."""
    sweep = json.loads(LITE0_SWEEP.read_text())
    columns = {BUNDLED: dict(zip(sweep["seeds"].split(","), sweep["validation"][SWEEP_NAME]["auroc"]))}
    for study in studies:
        if study != BUNDLED:
            rows = json.loads((STUDIES[study] / "validation_per_seed.json").read_text())
            columns[study] = {seed: row[method] for seed, row in rows.items()}
    seeds = sorted(set.intersection(*(set(c) for c in columns.values())), key=int)
    others = [c for c in columns if c != BUNDLED]
    lines = ["", f"Paired by split seed, validation AUROC of `{method}` (difference: bundled minus the other):", "",
             "| seed | " + " | ".join(columns) + " | " + " | ".join(f"difference ({o})" for o in others) + " |",
             "|---|" + "---:|" * (len(columns) + len(others))]
    base = columns[BUNDLED]
    lines += [f"| {s} | " + " | ".join(pct(c[s]) for c in columns.values()) + " | "
              + " | ".join(pct(base[s] - columns[o][s]) for o in others) + " |" for s in seeds]
    lines += [""] + [f"- {BUNDLED} ahead of {o} on {sum(base[s] > columns[o][s] for s in seeds)} of {len(seeds)} seeds."
                     for o in others] + [""]
    return lines


def tables(reports: dict[str, dict]) -> list[str]:
    winner, picks = verdict(reports)
    lines = ["## Validation (the rule reads only this)", "", f"Rule: {RULE}.", "",
             "| classifier | method | validation AUROC (mean ± std) | validation FPR95 (mean) |", "|---|---|---:|---:|"]
    for study, report in reports.items():
        candidates = report["selection"]["candidates"]
        for method in METHODS:
            if method in candidates:
                c = candidates[method]
                mark = " (its pick)" if method == picks[study][0] else ""
                lines.append(f"| {study} | {method}{mark} | {pct(c['auroc'])} ± {pct(c['auroc_std'])} | {pct(c['fpr95'])} |")
    lines += ["", f"**Verdict by the rule: {winner}** (" + "; ".join(
        f"{study}: `{method}` {pct(auroc)}" for study, (method, auroc) in picks.items()) + ").", ""]
    lines += paired(list(reports))
    lines += ["## Test sets (reported, never read by the rule)", "",
              "AUROC / FPR95 (%, paper convention), mean ± std over the five seeds.", "",
              "| classifier | method | " + " | ".join(SETS) + " |", "|---|---|" + "---|" * len(SETS)]
    for study, report in reports.items():
        for method in METHODS:
            row = report["results"].get(method)
            if row is None:
                continue
            cells = [f"{pct(row[s]['auroc'])} ± {pct(row[s]['auroc_std'])} / {pct(row[s]['fpr95'])} ± "
                     f"{pct(row[s]['fpr95_std'])}" if s in row else "—" for s in SETS]
            lines.append(f"| {study} | {method} | " + " | ".join(cells) + " |")
    lines += ["", "Per seed (best epoch, validation and ID test accuracy):", ""]
    for study, report in reports.items():
        per_seed = report["meta"]["per_seed"]
        lines.append(f"- {study}: " + "; ".join(
            f"seed {s}: val {v['best_val_accuracy']:.3f}, test {v['id_test_accuracy']:.3f}" for s, v in per_seed.items()))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed-reports", action="append", default=[], metavar="STUDY=DIR",
                        help="a study's `eval --seeds` output folder (seed-N/report.json); repeatable")
    args = parser.parse_args()
    for text in args.seed_reports:
        study, folder = text.split("=", 1)
        save_per_seed(study, Path(folder))
    reports = {study: report for study in STUDIES if (report := load(study)) is not None}
    doc = ROOT / "docs/results/architecture-comparison.md"
    head = doc.read_text().split(MARKER)[0] if doc.exists() else "# Architectures compared over five split seeds\n\n"
    doc.write_text(head.rstrip("\n") + "\n\n" + MARKER + "\n\n" + "\n".join(tables(reports)) + "\n")
    print(f"written {doc.relative_to(ROOT)}; verdict: {verdict(reports)[0]}")


if __name__ == "__main__":
    main()
