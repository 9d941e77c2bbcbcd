"""A tiny real subset of ../shared/data/hyperkvasir-lgi (symlinked, never copied) and a classifier
trained on it for one epoch: enough to run every offline command end to end in seconds."""

from pathlib import Path

import pytest

from stream_monitor.data.split import make_split, write_split
from stream_monitor.evaluation.datasets import SHARED_DATA
from stream_monitor.training.train import train_classifier

HYPERKVASIR = SHARED_DATA / "hyperkvasir-lgi"
ID_CLASSES = ("normal-cecum", "bbps-2-3", "bbps-0-1")
OOD_CLASSES = ("polyp", "impacted-stool")
PER_CLASS = {"normal-cecum": 8, "bbps-2-3": 8, "bbps-0-1": 8, "polyp": 6, "impacted-stool": 4}


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    if not HYPERKVASIR.is_dir():
        pytest.fail(f"development data not found at {HYPERKVASIR}: the test runs on it")
    root = tmp_path_factory.mktemp("hyperkvasir-tiny")
    for class_name, count in PER_CLASS.items():
        (root / class_name).mkdir()
        for source in sorted((HYPERKVASIR / class_name).glob("*.jpg"))[:count]:
            (root / class_name / source.name).symlink_to(source)
    return root


@pytest.fixture(scope="session")
def tiny_split(tiny_root, tmp_path_factory) -> Path:
    split = make_split(tiny_root, ID_CLASSES, seed=0, fractions=(0.5, 0.25, 0.25), ood_classes=OOD_CLASSES)
    return write_split(split, tmp_path_factory.mktemp("split") / "tiny.json")


@pytest.fixture(scope="session")
def tiny_model(tiny_split, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "tiny_effnet.pt"
    train_classifier(tiny_split, out, epochs=1, batch_size=4, seed=0, progress=False)
    return out
