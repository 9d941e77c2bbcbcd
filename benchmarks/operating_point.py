"""What an alert threshold costs and buys, over split seeds: the share of frames each threshold flags, ID test
and every OOD set, for several artifacts per seed (e.g. the clean and the capture-chain calibration of
`stream-monitor fit --calibrate-over`). AUROC and FPR95 do not depend on the threshold; this does. Beside it, the
AUROC / FPR95 (paper convention) of each artifact's alert score, every OOD set against the ID test part, so that two
artifacts fitted differently (`stream-monitor fit --fit-over`) are compared on the same test sets.

    python benchmarks/operating_point.py --work-dir runs/seeds-e20 \
        --artifacts clean=runs/benign-seeds-bstats/paper-seed{S}.npz \
        --artifacts capture-chain=runs/benign-seeds-cc/paper-seed{S}.npz \
        --artifacts "capture-chain fit=runs/fit-over-cc/paper-seed{S}.npz" \
        --artifacts "capture-chain fit, shrinkage 0.3=runs/fit-over-cc-s03/paper-seed{S}.npz" \
        --out benchmarks/results/operating-point

(how each artifact is fitted: benchmarks/results/benign-change-seeds-fit-over-cc{,-s03}/README.md; the last one ships.)

Sets (still images, as the dev benchmark reads them): the seed's ID test part, the test part of the HyperKvasir OOD
classes (never the validation part the threshold could have seen), CVC-ClinicDB polyps, PolypGen polyps per
centre (A, B, C), PolypGen normal colon (other hospitals). Features come from the shared feature cache.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import add_metrics, add_seed_model_arguments, seed_models, write_report  # noqa: E402

from stream_monitor.baselines.serving import load_alert_detector  # noqa: E402
from stream_monitor.data.features import default_cache_dir, extract_paths, model_fingerprint  # noqa: E402
from stream_monitor.data.images import list_images  # noqa: E402
from stream_monitor.evaluation.datasets import SHARED_DATA, ood_validation_split  # noqa: E402
from stream_monitor.evaluation.ood_metrics import evaluate  # noqa: E402


def sets_for(split) -> dict[str, list[Path]]:
    _, test = ood_validation_split(split)
    out = {"ID test": split.paths("test"), "HyperKvasir OOD test part": [p for ps in test.values() for p in ps]}
    out.update({f"HyperKvasir {name} (test part)": paths for name, paths in test.items()})
    out["CVC-ClinicDB polyps"] = list_images(SHARED_DATA / "sequences" / "cvc-clinicdb", recursive=True)
    for centre in "ABC":
        out[f"PolypGen polyps {centre}"] = list_images(SHARED_DATA / "polypgen-positive" / f"centre_{centre}")
    out["PolypGen normal (other hospitals)"] = list_images(SHARED_DATA / "sequences" / "polypgen-negative",
                                                           recursive=True)
    return out


def separation_table(separation: dict, columns: dict[str, str]) -> list[str]:
    """Markdown rows of AUROC / FPR95 per set ({column key: {set: {"auroc": [...], "fpr95": [...]}}}, one value per
    seed), mean ± sample std over seeds in %, two decimals; `columns` maps each key to its header."""
    keys = list(columns)
    lines = ["| set | " + " | ".join(columns.values()) + " |", "|---|" + "---:|" * len(keys)]
    for name in separation[keys[0]]:
        cells = []
        for k in keys:
            a, f = 100 * np.array(separation[k][name]["auroc"]), 100 * np.array(separation[k][name]["fpr95"])
            cells.append(f"{a.mean():.2f} ± {a.std(ddof=1):.2f} / {f.mean():.2f} ± {f.std(ddof=1):.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_seed_model_arguments(parser)
    parser.add_argument("--artifacts", action="append", required=True, metavar="LABEL=PATTERN",
                        help="an artifact per seed, {S} replaced by the seed")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    labelled = dict(a.split("=", 1) for a in args.artifacts)
    shares: dict[str, dict[str, list[float]]] = {}
    thresholds: dict[str, list[float]] = {}
    separation: dict[str, dict[str, dict[str, list[float]]]] = {}
    for seed, split, model in seed_models(args):
        fingerprint = model_fingerprint(model)
        features = {name: extract_paths(model, paths, name, default_cache_dir(), fingerprint, progress=False)
                    for name, paths in sets_for(split).items()}
        for label, pattern in labelled.items():
            alert = load_alert_detector(Path(pattern.replace("{S}", str(seed))))
            thresholds.setdefault(label, []).append(alert.threshold)
            scores = {name: alert.score(extracted.extended() if alert.needs_block_stats else extracted.features)
                      for name, extracted in features.items()}
            for name, values in scores.items():
                shares.setdefault(label, {}).setdefault(name, []).append(float(np.mean(values > alert.threshold)))
                if name != "ID test":
                    add_metrics(separation, (label, name), evaluate(scores["ID test"], values))
        print(f"seed {seed} done", flush=True)
    payload = {"seeds": args.seeds, "artifacts": labelled, "thresholds": thresholds, "share_flagged": shares,
               "against_id_test": separation}
    labels = list(labelled)
    lines = [f"# Share of frames flagged at each threshold, seeds {args.seeds}", "",
             "Mean over seeds (min-max) in %, still images; the artifacts: "
             + "; ".join(f"{k} = `{v}`" for k, v in labelled.items()) + ". Regenerate: docstring of "
             "benchmarks/operating_point.py.", "",
             "| set | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for name in shares[labels[0]]:
        cells = [f"{100 * np.mean(shares[k][name]):.1f} ({100 * min(shares[k][name]):.1f}-{100 * max(shares[k][name]):.1f})"
                 for k in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "AUROC / FPR95 (%, paper convention) of each artifact's alert score against the ID test part, "
              "mean ± std over seeds (sample std, as `eval --seeds`; two decimals, so that a mean just under a "
              "target does not print as on it; threshold-free):", "",
              *separation_table(separation, {k: k for k in labels})]
    write_report(args.out, "operating_point", payload, lines)


if __name__ == "__main__":
    main()
