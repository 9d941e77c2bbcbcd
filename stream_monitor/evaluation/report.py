"""Evaluation reports: `report.json`, `report.csv` (one row per method and OOD set), `report.md`, and
PNG plots (ROC curves, score histograms, the ablation). Fractions in JSON/CSV, percentages in Markdown.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: reports are written on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .benchmark import MethodResult  # noqa: E402

METRIC_KEYS = ("auroc", "fpr95", "fpr95_ood_positive", "aupr_in", "aupr_out", "detection_error")
CONVENTIONS = {
    "auroc": "area under ROC, OOD = positive class",
    "fpr95": "NERO paper's convention: ID accepted; τ = sorted(s_ID)[floor(0.95 n_ID)], share of OOD with s ≤ τ",
    "fpr95_ood_positive": "OpenOOD / pytorch-ood convention: OOD positive; share of ID flagged at 95% OOD recall",
    "aupr_in": "average precision, ID positive",
    "aupr_out": "average precision, OOD positive",
    "detection_error": "min over thresholds of ½(1−TPR) + ½·FPR, OOD positive",
    "scores": "every score is oriented higher = more OOD; all values are fractions in [0, 1]",
}


def metrics_table(results: list[MethodResult]) -> dict[str, dict[str, dict[str, float]]]:
    """{method: {ood_set: {metric: value}}} — the `results` block of report.json."""
    return {r.name: {ood: m.to_dict() for ood, m in r.test.items()} for r in results}


def aggregate_seeds(tables: list[dict[str, dict[str, dict[str, float]]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and std (ddof = 1) of each metric over seeds; adds `<metric>_std` and `n_seeds`."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for method in tables[0]:
        out[method] = {}
        for ood in tables[0][method]:
            entry: dict[str, float] = {"n_seeds": len(tables)}
            for key in METRIC_KEYS:
                values = np.array([t[method][ood][key] for t in tables])
                entry[key] = float(values.mean())
                entry[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            out[method][ood] = entry
    return out


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.write_text(json.dumps({"conventions": CONVENTIONS, **report}, indent=2, sort_keys=False) + "\n")


def write_csv(path: Path, table: dict[str, dict[str, dict[str, float]]]) -> None:
    """Long format: one row per (method, OOD set)."""
    extra = sorted({k for m in table.values() for e in m.values() for k in e} - set(METRIC_KEYS))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "ood_set", *METRIC_KEYS, *extra])
        for method, per_set in table.items():
            for ood, entry in per_set.items():
                writer.writerow([method, ood, *(f"{entry[k]:.6f}" for k in METRIC_KEYS), *(entry.get(k, "") for k in extra)])


def _cell(entry: dict[str, float], key: str) -> str:
    text = f"{100 * entry[key]:.1f}"
    return text + (f" ± {100 * entry[key + '_std']:.1f}" if f"{key}_std" in entry else "")


def summary_markdown(table: dict[str, dict[str, dict[str, float]]], highlight: set[str] = frozenset()) -> str:
    """Methods × OOD sets, each cell `AUROC / FPR95` in percent (FPR95 in the paper's convention)."""
    sets = list(next(iter(table.values())))
    lines = ["| method | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    for method, per_set in table.items():
        name = f"**{method}**" if method in highlight else method
        cells = [f"{_cell(per_set[s], 'auroc')} / {_cell(per_set[s], 'fpr95')}" for s in sets]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_set_markdown(table: dict[str, dict[str, dict[str, float]]], ood_set: str) -> str:
    """One OOD set: one row per method, every metric, in percent."""
    header = "| method | AUROC | FPR95 (paper) | FPR95 (OOD+) | AUPR-In | AUPR-Out | det. error |"
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|"]
    for method, per_set in table.items():
        entry = per_set[ood_set]
        lines.append(f"| {method} | " + " | ".join(_cell(entry, k) for k in METRIC_KEYS) + " |")
    return "\n".join(lines)


def plot_roc(path: Path, results: list[MethodResult], ood_set: str) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for r in results:
        fpr, tpr = _roc(r.id_test_scores, r.ood_test_scores[ood_set])
        ax.plot(fpr, tpr, label=f"{r.name} ({100 * r.test[ood_set].auroc:.1f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set(xlabel="ID frames flagged (FPR)", ylabel="OOD frames flagged (TPR)", title=f"ROC — {ood_set}")
    ax.legend(fontsize=7, loc="lower right", title="method (AUROC %)", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _roc(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    thresholds = np.unique(np.concatenate([id_scores, ood_scores]))[::-1]
    fpr = np.r_[0.0, [(id_scores >= t).mean() for t in thresholds]]
    tpr = np.r_[0.0, [(ood_scores >= t).mean() for t in thresholds]]
    return fpr, tpr


def plot_histograms(path: Path, result: MethodResult, threshold: float | None = None) -> None:
    sets = list(result.ood_test_scores)
    fig, axes = plt.subplots(1, len(sets), figsize=(3.2 * len(sets), 2.8), squeeze=False)
    for ax, name in zip(axes[0], sets):
        both = np.concatenate([result.id_test_scores, result.ood_test_scores[name]])
        low, high = np.percentile(both, [0.5, 99.5])
        bins = np.linspace(low, high if high > low else low + 1.0, 40)  # constant scores: one visible bar
        ax.hist(result.id_test_scores, bins=bins, alpha=0.6, density=True, label="ID test")
        ax.hist(result.ood_test_scores[name], bins=bins, alpha=0.6, density=True, label=name)
        if threshold is not None:
            ax.axvline(threshold, color="black", lw=1, ls="--", label="threshold")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle(f"{result.name}: score distributions (higher = more OOD)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_ablation(path: Path, results: list[MethodResult]) -> None:
    names = [r.name for r in results]
    val = [100 * r.validation.auroc if r.validation else np.nan for r in results]
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(names) + 1))
    ax.barh(names[::-1], val[::-1], color="tab:blue")
    ax.set(xlabel="validation AUROC (%)", title="NERO ablation (robust preset, one factor at a time)")
    ax.set_xlim(max(0, np.nanmin(val) - 5), min(100, np.nanmax(val) + 2))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render_markdown(report: dict[str, Any], ood_sets: list[str]) -> str:
    """The whole report as one Markdown page."""
    meta, table = report["meta"], report["results"]
    sizes = meta["sizes"]
    parts = [
        "# OOD evaluation report",
        "",
        f"Model `{meta.get('model') or meta['arch']}` (sha256 `{(meta.get('model_sha256') or '')[:12]}`), split seed "
        f"{meta['split_seed']}, stream-monitor {meta['stream_monitor']}. ID: {sizes['train']} train / {sizes['val']} "
        f"validation / {sizes['id_test']} test images"
        + (f"; ID test accuracy {100 * meta['id_test_accuracy']:.1f}%." if meta.get("id_test_accuracy") is not None else "."),
        "OOD test sets: " + ", ".join(f"{k} ({v})" for k, v in sizes["ood_test"].items()) + ".",
        "",
        "Cells are **AUROC / FPR95** in %. AUROC: OOD positive. FPR95: the NERO paper's convention (ID accepted, "
        "ties count as false positives); the OpenOOD convention (`fpr95_ood_positive`) is in the per-set tables, "
        "report.csv and report.json. Scores: higher = more OOD.",
        "",
        summary_markdown(table, highlight={"nero_default", "nero_parity"}),
        "",
    ]
    notes = {**meta.get("ood_notes", {})}
    if notes:
        parts += ["OOD set notes:", ""] + [f"- **{k}**: {v}" for k, v in notes.items()] + [""]
    if "selection" in report:
        sel = report["selection"]
        parts += [
            "## The default NERO configuration",
            "",
            f"Rule: {sel['rule']}.",
            "",
            f"Chosen: `{json.dumps(sel['options'])}` — validation AUROC {100 * sel['validation']['auroc']:.1f}%, "
            f"FPR95 {100 * sel['validation']['fpr95']:.1f}% over {len(sel['candidates'])} candidates.",
            "",
            "## Ablation (robust preset, one factor at a time)",
            "",
            "| variant | validation AUROC / FPR95 | " + " | ".join(f"test {s}" for s in ood_sets) + " |",
            "|---|---|" + "---|" * len(ood_sets),
        ]
        for name, entry in report["ablation"].items():
            val = entry["validation"]
            cells = [f"{100 * entry['test'][s]['auroc']:.1f} / {100 * entry['test'][s]['fpr95']:.1f}" for s in ood_sets]
            parts.append(f"| {name} | {100 * val['auroc']:.1f} / {100 * val['fpr95']:.1f} | " + " | ".join(cells) + " |")
        parts.append("")
    parts += ["## Per OOD set", ""]
    for name in ood_sets:
        parts += [f"### {name}", "", per_set_markdown(table, name), ""]
    if report.get("notes"):
        parts += ["## Method notes", ""] + [f"- **{k}**: {v}" for k, v in report["notes"].items()] + [""]
    return "\n".join(parts)
