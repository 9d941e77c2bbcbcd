"""Mean ± std over split seeds: one classifier trained per seed of the ID split, each evaluated alike.

A different seed re-draws which ID images are train / validation / test (and which OOD images are
validation / test), so a classifier must be trained for each: re-using one model across seeds would
leak its training images into the test set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..data.split import Split, resplit
from ..errors import InputError
from ..models.registry import load_classifier, sha256_file
from ..training.train import train_classifier
from . import report as rep
from .datasets import Source, external_sources, ood_validation_split
from .dev_benchmark import EvaluationInputs, evaluate_all

SEED_ARCH = "efficientnet_lite0"
"""The seed study's default architecture: the bundled model's."""


def seed_sources(split: Split, dev_benchmark: bool, extra: list[Source]) -> tuple[list[Source], dict[str, list[Path]]]:
    if not dev_benchmark:
        return extra, {}
    validation, test = ood_validation_split(split)
    hk = [Source(f"hk-{n}", "files", files=tuple(p)) for n, p in test.items()]
    pooled = Source("hk-all-ood", "files", files=tuple(p for paths in test.values() for p in paths))
    return hk + [pooled] + external_sources() + extra, validation


def recorded_recipe(sidecar: dict[str, Any]) -> dict[str, Any]:
    """The training recipe a classifier sidecar records. The trainer writes `augment_recipe` only for
    recipes other than the paper's (older sidecars predate the option), so its absence means "paper"."""
    return {"arch": sidecar.get("arch"), "augment": sidecar.get("augment_recipe", "paper"),
            "epochs": sidecar.get("epochs"), "seed": sidecar.get("seed"), "split_seed": sidecar.get("split_seed")}


def seed_checkpoint(work_dir: Path, arch: str, seed: int, epochs: int) -> Path:
    """Where the seed study keeps seed `seed`'s classifier: `<work_dir>/<arch>_seed<S>_e<E>.pt`."""
    return work_dir / f"{arch}_seed{seed}_e{epochs}.pt"


def reusable_checkpoint(weights: Path, recipe: dict[str, Any]) -> bool:
    """True when `weights` is a finished run of exactly `recipe`; False when there is nothing finished to
    reuse (no sidecar, or an interrupted run). A finished run of another recipe is an error: silently
    retraining over it would destroy it, reusing it would mix recipes in one mean."""
    try:
        sidecar = json.loads(weights.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return False
    if sidecar.get("status") != "complete":
        return False
    found = recorded_recipe(sidecar)
    if found != recipe:
        raise InputError(f"{weights} was trained with {found}, this evaluation asks for {recipe}; "
                         "use another --work-dir (or remove the checkpoint and its .json sidecar)")
    return True


def _finished_report(folder: Path, model_sha256: str, ood_sets: list[str]) -> dict[str, Any] | None:
    """A seed's earlier report, when it is for the same weights and the same OOD sets (a run that was
    interrupted or extended by more seeds resumes instead of recomputing hours of CPU work)."""
    try:
        report = json.loads((folder / "report.json").read_text())
    except (OSError, ValueError):
        return None
    same_sets = all(set(per_set) == set(ood_sets) for per_set in report.get("results", {}).values())
    return report if report.get("meta", {}).get("model_sha256") == model_sha256 and same_sets else None


def evaluate_seeds(split: Split, seeds: list[int], epochs: int, work_dir: Path, out_dir: Path, cache_dir: Path | None,
                   dev_benchmark: bool, extra: list[Source], odin: bool = True, adascale: bool = False,
                   augment: str = "paper", arch: str = SEED_ARCH) -> dict[str, Any]:
    """Train (or reuse) one `arch` classifier per seed with the `augment` recipe, evaluate each into
    out_dir/seed-N, aggregate. Seed S trains with split seed S and training seed S, stopping once validation accuracy is
    1.0 (the checkpoint the full run would keep), as `train --split-seed S --seed S --stop-when-final`."""
    tables, per_seed, validations = [], {}, []
    for seed in seeds:
        seed_split = split if seed == split.seed else resplit(split, seed)
        weights = seed_checkpoint(work_dir, arch, seed, epochs)
        recipe = {"arch": arch, "augment": augment, "epochs": epochs, "seed": seed, "split_seed": seed_split.seed}
        if not reusable_checkpoint(weights, recipe):
            train_classifier(seed_split, weights, arch=arch, epochs=epochs, seed=seed, split_seed=None,
                             augment=augment, stop_when_final=True)
        model, meta = load_classifier(weights)
        sources, validation = seed_sources(seed_split, dev_benchmark, extra)
        report = _finished_report(out_dir / f"seed-{seed}", sha256_file(weights), [s.name for s in sources])
        if report is None:
            inputs = EvaluationInputs(model, seed_split, sources, validation, None, sha256_file(weights), str(weights))
            # The one-factor ablation is a single-model study (dev-benchmark); over seeds it only costs time.
            report = evaluate_all(inputs, out_dir / f"seed-{seed}", cache_dir, odin=odin, adascale=adascale,
                                  ablation=False)
        tables.append(report["results"])
        validations.append(seed_validation(report))
        per_seed[seed] = {"id_test_accuracy": report["meta"]["id_test_accuracy"],
                          "best_val_accuracy": meta.get("best_val_accuracy"),
                          "selected": report.get("selection", {}).get("options")}
    aggregated = rep.aggregate_seeds(tables)
    selection = select_over_seeds(validations, set(aggregated))
    summary = {"meta": {"seeds": seeds, "arch": arch, "epochs": epochs, "augment": augment, "per_seed": per_seed}, "selection": selection,
               "results": aggregated}
    out_dir.mkdir(parents=True, exist_ok=True)
    rep.write_json(out_dir / "report.json", summary)
    rep.write_csv(out_dir / "report.csv", aggregated)
    ood_sets = list(next(iter(aggregated.values())))
    text = [
        f"# OOD evaluation over {len(seeds)} split seeds ({', '.join(map(str, seeds))})",
        "",
        f"One `{arch}` classifier trained per seed ({epochs} epochs, augmentation recipe `{augment}`). Cells: AUROC / FPR95 in %, "
        "mean ± std over seeds; `nero_default` is the configuration each seed selected on its own validation data.",
        "",
        rep.summary_markdown(aggregated, highlight={"nero_default", "nero_parity"}),
        "",
        selection_markdown(selection),
        "",
        "Per seed: " + json.dumps(per_seed),
        "",
    ] + [f"### {name}\n\n{rep.per_set_markdown(aggregated, name)}\n" for name in ood_sets]
    (out_dir / "report.md").write_text("\n".join(text))
    return summary


SEED_SELECTION_RULE = (
    "among every method of the main table (NERO, baselines, fusions, and each seed's selected NERO "
    "configuration as nero_default): the highest mean over seeds of the validation AUROC (ID validation "
    "images vs the pooled validation OOD images, disjoint from every test set); ties by the lower mean "
    "validation FPR95 (paper convention)"
)


def seed_validation(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{method: validation metrics} of one seed's report, nero_default included."""
    out = {name: dict(metrics) for name, metrics in report.get("validation", {}).items()}
    if "selection" in report:
        out["nero_default"] = dict(report["selection"]["validation"])
    return out


def select_over_seeds(validations: list[dict[str, dict[str, float]]], methods: set[str]) -> dict[str, Any]:
    """Apply SEED_SELECTION_RULE to the main-table methods that have validation metrics on every seed."""
    names = sorted(n for n in methods if validations and all(n in v for v in validations))
    if not names:
        return {"rule": SEED_SELECTION_RULE, "chosen": None, "candidates": {}}
    table = {n: {"auroc": float(np.mean([v[n]["auroc"] for v in validations])),
                 "auroc_std": float(np.std([v[n]["auroc"] for v in validations], ddof=1)) if len(validations) > 1 else 0.0,
                 "fpr95": float(np.mean([v[n]["fpr95"] for v in validations]))} for n in names}
    chosen = max(names, key=lambda n: (round(table[n]["auroc"], 12), -table[n]["fpr95"]))
    return {"rule": SEED_SELECTION_RULE, "chosen": chosen, "candidates": table}


def selection_markdown(selection: dict[str, Any]) -> str:
    """The cross-seed choice and the validation table it was made on (best first)."""
    if not selection.get("chosen"):
        return "No cross-seed selection: no method had validation metrics on every seed."
    rows = sorted(selection["candidates"].items(), key=lambda kv: (-kv[1]["auroc"], kv[1]["fpr95"]))
    lines = [f"**Selected over seeds: `{selection['chosen']}`** — rule: {selection['rule']}.", "",
             "| method | validation AUROC (mean ± std) | validation FPR95 (mean) |", "|---|---:|---:|"]
    lines += [f"| {n} | {100 * m['auroc']:.1f} ± {100 * m['auroc_std']:.1f} | {100 * m['fpr95']:.1f} |" for n, m in rows]
    return "\n".join(lines)
