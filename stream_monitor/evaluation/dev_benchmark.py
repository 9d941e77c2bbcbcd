"""One evaluation end to end: extract features once, run NERO and every baseline, choose the default
NERO configuration on validation data, write the report and the fitted default detector.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..baselines import odin_score
from ..data.features import Extracted, extract, extract_paths, model_fingerprint
from ..data.split import Split
from ..models.base import ClassifierAdapter
from ..nero import NeroDetector
from ..preprocess import preprocess_batch
from . import report as rep
from .benchmark import SELECTION_RULE, BenchmarkData, MethodResult, result_from_scores, run_methods, select_default
from .datasets import Source
from .methods import ablation_methods, headline_methods, selection_candidates


@dataclass
class EvaluationInputs:
    model: ClassifierAdapter
    split: Split
    ood_sources: list[Source]
    ood_validation: dict[str, list[Path]] = field(default_factory=dict)
    id_test: Source | None = None  # None: the split's ID test images
    model_sha256: str | None = None
    model_name: str = ""


def extract_source(model: ClassifierAdapter, source: Source, cache_dir: Path | None, fingerprint: str) -> Extracted:
    if source.kind == "files":
        return extract_paths(model, list(source.files), source.name, cache_dir, fingerprint)
    return extract(model, source.frames(), None, description=source.name)


def build_data(inputs: EvaluationInputs, cache_dir: Path | None) -> tuple[BenchmarkData, dict[str, Any]]:
    """Extract every set once (cached) and return the arrays plus their sizes for the report."""
    model, split = inputs.model, inputs.split
    fingerprint = model_fingerprint(model)
    sets = {name: extract_paths(model, split.paths(name), f"ID {name}", cache_dir, fingerprint) for name in ("train", "val")}
    if inputs.id_test is None:
        id_test = extract_paths(model, split.paths("test"), "ID test", cache_dir, fingerprint)
    else:
        id_test = extract_source(model, inputs.id_test, cache_dir, fingerprint)
    ood_sets = {s.name: extract_source(model, s, cache_dir, fingerprint) for s in inputs.ood_sources}
    ood_val_sets = {n: extract_paths(model, p, f"OOD val {n}", cache_dir, fingerprint)
                    for n, p in inputs.ood_validation.items()}
    ood = {n: e.features for n, e in ood_sets.items()}
    ood_val = {n: e.features for n, e in ood_val_sets.items()}
    weight, bias = model.head_arrays()
    extended = None
    if sets["train"].block_stats is not None:  # the model gives block statistics (EfficientNet adapters)
        extended = {"train": sets["train"].extended(), "val": sets["val"].extended(), "id_test": id_test.extended(),
                    **{f"ood_test:{n}": e.extended() for n, e in ood_sets.items()},
                    **{f"ood_val:{n}": e.extended() for n, e in ood_val_sets.items()}}
    data = BenchmarkData(sets["train"].features, split.labels("train"), weight, bias, sets["val"].features,
                         id_test.features, ood, ood_val, extended)
    sizes = {"train": len(sets["train"]), "val": len(sets["val"]), "id_test": len(id_test),
             "ood_test": {k: len(v) for k, v in ood.items()}, "ood_validation": {k: len(v) for k, v in ood_val.items()}}
    id_acc = float(np.mean(id_test.logits.argmax(1) == split.labels("test"))) if inputs.id_test is None else None
    return data, {"sizes": sizes, "id_test_accuracy": id_acc}


def odin_result(inputs: EvaluationInputs, batch_size: int = 32) -> MethodResult:
    """ODIN needs the images and a gradient pass: run it on ID test and every OOD set."""
    start = time.perf_counter()
    logits_only = _LogitsOnly(inputs.model)
    id_source = inputs.id_test or Source("ID test", "files", files=tuple(inputs.split.paths("test")))

    def scores(source: Source) -> np.ndarray:
        chunks = []
        frames = source.frames()
        while batch := list(itertools.islice(frames, batch_size)):
            images = torch.from_numpy(preprocess_batch([image for _, image in batch]))
            chunks.append(odin_score(logits_only, images))
        return np.concatenate(chunks)

    ood = {s.name: scores(s) for s in inputs.ood_sources}
    note = "Liang et al. 2018 settings (T = 1000, ε = 0.0014, gradient ÷ channel std), not the reference code's"
    return result_from_scores("odin", "baseline", scores(id_source), ood, time.perf_counter() - start, note)


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model: ClassifierAdapter) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]


def evaluate_all(inputs: EvaluationInputs, out_dir: Path, cache_dir: Path | None = None, odin: bool = True,
                 select: bool = True, adascale: bool = False, ablation: bool = True,
                 fusions: bool = True) -> dict[str, Any]:
    """Run the whole evaluation, write every report file into `out_dir`, return the report dict."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data, facts = build_data(inputs, cache_dir)
    headline = run_methods(headline_methods(fusions), data, "methods")
    if odin:
        headline.append(odin_result(inputs))
    if adascale:  # a gradient and a second forward pass per image: opt-in, like ODIN's cost
        from .adascale_eval import adascale_results
        headline += adascale_results(inputs)
    report: dict[str, Any] = {
        "meta": {"model": inputs.model_name, "model_sha256": inputs.model_sha256, "arch": inputs.model.arch,
                 "split_seed": inputs.split.seed, "stream_monitor": __version__, **facts,
                 "ood_notes": {s.name: s.note for s in inputs.ood_sources if s.note}},
        "results": rep.metrics_table(headline),
        "notes": {r.name: r.note for r in headline if r.note},
    }
    chosen = None
    if select and data.ood_val:
        ablated = run_methods(ablation_methods(len(data.train_features)), data, "ablation") if ablation else []
        candidates = run_methods(selection_candidates(len(data.train_features)), data, "selection")
        chosen = dataclasses.replace(select_default(candidates), name="nero_default")
        report["results"]["nero_default"] = {o: m.to_dict() for o, m in chosen.test.items()}
        report["validation"] = {r.name: r.validation.to_dict() for r in headline + ablated if r.validation}
        report["ablation"] = {r.name: {"validation": r.validation.to_dict(), "test": {o: m.to_dict() for o, m in r.test.items()}}
                              for r in ablated}
        report["selection"] = {"rule": SELECTION_RULE, "options": chosen.options, "validation": chosen.validation.to_dict(),
                               "candidates": {c.name: {"auroc": c.validation.auroc, "fpr95": c.validation.fpr95} for c in candidates}}
        if ablated:
            rep.plot_ablation(out_dir / "ablation.png", ablated)
        headline.append(chosen)
        detector = fit_default(inputs, chosen.options, cache_dir)
        detector.save(out_dir / "nero_default.npz")
        report["selection"]["artifact"] = "nero_default.npz"
        report["selection"]["threshold"] = detector.calibration.to_dict()
    _write_reports(out_dir, report, headline, inputs)
    return report


def fit_default(inputs: EvaluationInputs, options: dict[str, Any], cache_dir: Path | None, target_tpr: float = 0.95) -> NeroDetector:
    """Fit NERO with `options` on the split's ID train set and calibrate it on ID validation."""
    model, split = inputs.model, inputs.split
    fingerprint = model_fingerprint(model)
    train = extract_paths(model, split.paths("train"), "ID train", cache_dir, fingerprint)
    val = extract_paths(model, split.paths("val"), "ID val", cache_dir, fingerprint)
    weight, bias = model.head_arrays()
    det = NeroDetector(**options).fit(train.features, split.labels("train"), weight, bias,
                                      class_names=list(split.id_classes), model_sha256=inputs.model_sha256)
    det.calibrate(val.features, target_tpr)
    return det


def _write_reports(out_dir: Path, report: dict[str, Any], results: list[MethodResult], inputs: EvaluationInputs) -> None:
    rep.write_json(out_dir / "report.json", report)
    rep.write_csv(out_dir / "report.csv", report["results"])
    by_name = {r.name: r for r in results}
    ood_sets = [s.name for s in inputs.ood_sources]
    baselines = sorted((r for r in results if r.family == "baseline"), key=lambda r: -np.mean([m.auroc for m in r.test.values()]))
    shown = [by_name[n] for n in ("nero_parity", "nero_default") if n in by_name] + baselines[:4]
    for i, name in enumerate(ood_sets):
        rep.plot_roc(out_dir / f"roc_{i:02d}_{_slug(name)}.png", shown, name)
    for r in shown[:3]:
        rep.plot_histograms(out_dir / f"hist_{_slug(r.name)}.png", r)
    (out_dir / "report.md").write_text(rep.render_markdown(report, ood_sets))


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-").lower()
