"""Benign change over split seeds, every detector side by side: one table from the per-seed runs of
benchmarks/benign_change.py in a folder (<recipe>-seed<S>/benign_change-*.json), read from committed files.

    python benchmarks/benign_seeds_summary.py benchmarks/results/benign-change-seeds-bstats

Each run re-scores its seed's ID test frames (168) after each change at the detector's threshold calibrated
on the seed's 112 ID validation frames (95 % TPR). Per detector and change: the false-alert rate, mean over
the seeds, and the worst seed. The shipped alert's row is the run's "shipped default (...)" row. Writes
summary.md and summary.json into the folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

GOAL = 0.07


def load_runs(folder: Path) -> dict[int, dict[str, dict[str, float]]]:
    """{seed: {detector: {change: rate}}}; the shipped row is renamed "shipped default"."""
    runs = {}
    for run in sorted(folder.glob("*-seed*")):
        (file,) = run.glob("benign_change-*.json")
        rows = json.loads(file.read_text())["false_alert_rate"]
        runs[int(run.name.rsplit("seed", 1)[1])] = {
            ("shipped default" if name.startswith("shipped default") else name): rates for name, rates in rows.items()
            if not name.startswith("shipped NERO")}
    if not runs:
        raise SystemExit(f"no <recipe>-seed<S> runs in {folder}")
    return runs


def summarise(runs: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict]:
    seeds = sorted(runs)
    detectors = [d for d in runs[seeds[0]] if all(d in runs[s] for s in seeds)]
    changes = list(runs[seeds[0]][detectors[0]])
    out = {}
    for det in detectors:
        rates = np.array([[runs[s][det][c] for c in changes] for s in seeds])  # (seeds, changes)
        mean = dict(zip(changes, rates.mean(axis=0).tolist()))
        worst_seed = dict(zip(changes, rates.max(axis=0).tolist()))
        changed = [c for c in changes if c != "none"]
        out[det] = {"mean": mean, "worst_seed": worst_seed, "worst_change_mean": max(mean[c] for c in changed),
                    "rise_over_unchanged": max(mean[c] for c in changed) - mean["none"]}
    return {"seeds": seeds, "changes": changes, "detectors": out}


def markdown(summary: dict, folder: Path) -> str:
    changes, rows = summary["changes"], summary["detectors"]
    head = ("| detector | worst change (mean) | rise over unchanged | " + " | ".join(changes) + " |\n"
            "|---|---:|---:|" + "---:|" * len(changes))
    lines = []
    for det, r in sorted(rows.items(), key=lambda kv: (kv[0] != "shipped default", kv[1]["worst_change_mean"])):
        cells = " | ".join(f"{100 * r['mean'][c]:.1f}" + (" ✗" if c != "none" and r["mean"][c] > GOAL else "")
                           for c in changes)
        lines.append(f"| {det} | {100 * r['worst_change_mean']:.1f} | {100 * r['rise_over_unchanged']:+.1f} | {cells} |")
    shipped = rows["shipped default"]
    worst = " | ".join(f"{100 * shipped['worst_seed'][c]:.1f}" for c in changes)
    return "\n".join([
        f"# Benign change over seeds {','.join(map(str, summary['seeds']))}: every detector", "",
        f"Runs: `{folder}/<recipe>-seed<S>/` (benchmarks/benign_change.py, one per seed). False-alert rate in % on "
        "the seed's 168 ID test frames after each change, at the detector's threshold calibrated on the seed's 112 "
        "ID validation frames; mean over seeds. **rise over unchanged** = worst change minus the unchanged frames' "
        f"rate: what the change itself adds, apart from calibration noise. ✗: above the {100 * GOAL:.0f} % goal "
        "(issue 13). Regenerate: `python benchmarks/benign_seeds_summary.py " + str(folder) + "`.", "",
        head, *lines, "",
        "Shipped alert, worst seed per change: | " + worst + " |", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    summary = summarise(load_runs(args.folder))
    (args.folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    text = markdown(summary, args.folder)
    (args.folder / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
