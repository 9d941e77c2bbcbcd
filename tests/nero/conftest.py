import numpy as np
import pytest


def make_problem(n_classes: int, n_features: int, n_train: int, seed: int = 0):
    """Synthetic post-ReLU features with class structure, and a head that roughly separates the classes."""
    rng = np.random.default_rng(seed)
    prototypes = np.maximum(rng.normal(size=(n_classes, n_features)), 0) * 2
    labels = np.arange(n_train) % n_classes
    features = np.maximum(prototypes[labels] + rng.normal(size=(n_train, n_features)), 0)
    weight = (prototypes - prototypes.mean(0)) / np.sqrt(n_features) + rng.normal(size=(n_classes, n_features)) * 0.01
    bias = rng.normal(size=n_classes) * 0.1
    return features, labels, weight, bias, rng


@pytest.fixture
def problem():
    return make_problem(3, 64, 300)
