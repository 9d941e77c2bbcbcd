"""Write tests/golden/nero_golden.npz: fixed inputs and the scores NeroDetector gives them.

Regenerating is a deliberate act: run `python tests/golden/make_nero_golden.py` only when a change
to the scores is intended, and say why in the commit message. The inputs are stored with the scores,
so the golden test does not depend on the random generator's stream staying the same.
"""

from pathlib import Path

import numpy as np

from stream_monitor.nero import NeroDetector

OUT = Path(__file__).with_name("nero_golden.npz")
CONFIGS = {
    "parity": dict(mode="parity", k=20),
    "robust": dict(mode="robust"),
    "robust_kmeans3_pca_lambda": dict(mode="robust", centroids_per_class=3, lambda_space="pca"),
    "robust_residual_pca20": dict(mode="robust", use_residual=True, pca_components=20),
}


def make_inputs(seed: int = 2025):
    rng = np.random.default_rng(seed)
    n_classes, n_features = 3, 48
    prototypes = np.maximum(rng.normal(size=(n_classes, n_features)), 0) * 2
    labels = np.arange(240) % n_classes
    train = np.maximum(prototypes[labels] + rng.normal(size=(240, n_features)), 0)
    test = np.maximum(prototypes[np.arange(60) % n_classes] * rng.uniform(0.5, 2, (60, 1)) + rng.normal(size=(60, n_features)), 0)
    weight = rng.normal(size=(n_classes, n_features)) / np.sqrt(n_features)
    bias = rng.normal(size=n_classes) * 0.2
    return dict(train=train, labels=labels, test=test, weight=weight, bias=bias)


def golden_scores(inputs):
    out = {}
    for name, options in CONFIGS.items():
        det = NeroDetector(**options).fit(inputs["train"], inputs["labels"], inputs["weight"], inputs["bias"])
        out[f"{name}__score"] = det.score(inputs["test"])
        out[f"{name}__lambda"] = np.array(det.lambda_)
    return out


if __name__ == "__main__":
    inputs = make_inputs()
    np.savez(OUT, **inputs, **golden_scores(inputs))
    print(f"wrote {OUT}")
