"""Write tests/golden/baselines_golden.npz: fixed-seed inputs and every baseline's scores on them.

Run from the repository root, only on purpose (a change of method or setting that is meant to change
scores), and say why in the commit:

    .venv/bin/python tests/golden/make_baseline_golden.py

tests/baselines/test_golden.py recomputes the scores from the stored inputs with this file's CASES and
`compute_scores`, and compares them with the stored ones at rtol 1e-9. The inputs are stored too, so the
test does not depend on numpy's random streams staying the same across versions.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
GOLDEN_PATH = Path(__file__).with_name("baselines_golden.npz")
SEED = 20250615

# case name -> (registry name, constructor kwargs). Defaults, plus settings that exercise other branches.
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "msp": ("msp", {}),
    "energy": ("energy", {}),
    "energy_t2": ("energy", {"temperature": 2.0}),
    "entropy": ("entropy", {}),
    "max_logit": ("max_logit", {}),
    "gen": ("gen", {}),
    "gen_m3": ("gen", {"gamma": 0.5, "top_m": 3}),
    "mahalanobis": ("mahalanobis", {}),
    "vim": ("vim", {}),
    "vim_dim4": ("vim", {"dim": 4}),
    "neco": ("neco", {}),  # dim=100 clips to D=20: the ratio is 1 for every row (documents the clip)
    "neco_dim5": ("neco", {"dim": 5}),
    "neco_dim5_vit": ("neco", {"dim": 5, "scale_by_max_logit": True}),
    "knn": ("knn", {}),
    "knn_k5": ("knn", {"k": 5}),
    "react": ("react", {}),
    "react_abs09": ("react", {"threshold": 0.9}),
    "ash": ("ash", {}),
    "scale": ("scale", {}),
    "gradnorm": ("gradnorm", {}),
    "residual": ("residual", {}),
    "residual_dim4": ("residual", {"dim": 4}),
    "rmds": ("rmds", {}),
    "fdbd": ("fdbd", {}),
    "nnguide": ("nnguide", {}),
    "nnguide_k3": ("nnguide", {"k": 3}),
    "nci": ("nci", {}),
    "nci_alpha01": ("nci", {"alpha": 0.1}),
}
ODIN_CASES: dict[str, dict[str, float]] = {
    "odin": {},
    "odin_t100_eps5e-4": {"temperature": 100.0, "epsilon": 0.0005},
}


def make_inputs(seed: int = SEED) -> dict[str, np.ndarray]:
    """Post-ReLU-like features (D=20, C=5): 150 train rows, 30 test rows (half shifted); ODIN images."""
    rng = np.random.default_rng(seed)
    n_classes, width = 5, 20
    labels = np.arange(150) % n_classes
    centres = np.abs(rng.normal(0.0, 1.5, (n_classes, width)))
    train = np.maximum(centres[labels] + rng.normal(0.0, 0.7, (150, width)), 0.0)
    test_id = np.maximum(centres[np.arange(15) % n_classes] + rng.normal(0.0, 0.7, (15, width)), 0.0)
    test_shift = np.maximum(rng.normal(0.5, 1.5, (15, width)), 0.0)
    return {
        "train_features": train,
        "train_labels": labels.astype(np.int64),
        "weight": rng.normal(0.0, 0.5, (n_classes, width)),
        "bias": rng.normal(0.0, 0.2, n_classes),
        "test_features": np.vstack([test_id, test_shift]),
        "odin_images": rng.normal(0.0, 1.0, (6, 3, 8, 8)),
        "odin_weight": rng.normal(0.0, 0.05, (4, 3 * 8 * 8)),
        "odin_bias": rng.normal(0.0, 0.1, 4),
    }


def _odin_model(weight: np.ndarray, bias: np.ndarray) -> Any:
    import torch

    linear = torch.nn.Linear(weight.shape[1], weight.shape[0], dtype=torch.float64)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight))
        linear.bias.copy_(torch.from_numpy(bias))
    return torch.nn.Sequential(torch.nn.Flatten(), linear)


def compute_scores(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Scores (N,) float64 of every case in CASES and ODIN_CASES on `inputs`."""
    from stream_monitor.baselines import create_baseline, odin_score

    fit_args = (inputs["train_features"], inputs["train_labels"], inputs["weight"], inputs["bias"])
    scores = {
        case: create_baseline(name, **kwargs).fit(*fit_args).score(inputs["test_features"])
        for case, (name, kwargs) in CASES.items()
    }
    model = _odin_model(inputs["odin_weight"], inputs["odin_bias"])
    for case, kwargs in ODIN_CASES.items():
        scores[case] = odin_score(model, inputs["odin_images"], **kwargs)
    return scores


def main() -> None:
    if str(REPO_ROOT) not in sys.path:  # run as a script: make the package importable without installing
        sys.path.insert(0, str(REPO_ROOT))
    import torch

    inputs = make_inputs()
    scores = compute_scores(inputs)
    meta = {"meta/numpy": np.array(np.__version__), "meta/torch": np.array(torch.__version__)}
    np.savez(
        GOLDEN_PATH,
        **{f"input/{k}": v for k, v in inputs.items()},
        **{f"score/{k}": v for k, v in scores.items()},
        **meta,
    )
    print(f"wrote {GOLDEN_PATH.relative_to(REPO_ROOT)}: {len(scores)} cases, seed {SEED}")


if __name__ == "__main__":
    main()
