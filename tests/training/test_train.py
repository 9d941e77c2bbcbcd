"""Training: one short epoch on a tiny real subset gives a loadable float16 checkpoint and a sidecar."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from stream_monitor.data.split import Split, load_split
from stream_monitor.errors import WeightsUnavailableError
from stream_monitor.models import load_classifier, sha256_file
from stream_monitor.training.train import add_train_arguments, paper_augmentation, train_classifier

REPO = Path(__file__).resolve().parents[2]
SPLIT_FILE = REPO / "configs" / "splits" / "hyperkvasir-lgi.json"
DATA_ROOT = REPO.parent / "shared" / "data" / "hyperkvasir-lgi"


@pytest.fixture(autouse=True)
def _real_data() -> None:
    if not DATA_ROOT.is_dir():
        pytest.fail(f"real data not present at {DATA_ROOT}: these tests train on it")


def _tiny(split: Split, per_class: dict[str, int]) -> Split:
    """The first few images of each ID class in each subset of the committed split."""
    def first(subset: str, n: int) -> list:
        return [i for label in range(len(split.id_classes))
                for i in [x for x in split.subsets[subset] if x.label == label][:n]]

    subsets = {name: first(name, n) for name, n in per_class.items()} | {"test": [], "ood": []}
    return dataclasses.replace(split, subsets=subsets)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    split = _tiny(load_split(SPLIT_FILE), {"train": 2, "val": 1})
    out = tmp_path_factory.mktemp("train") / "tiny.pt"
    # One thread: at batch 4 a second thread gains little and, on a busy shared CI box, costs a lot.
    result = train_classifier(split, out, epochs=1, batch_size=4, seed=0, num_threads=1, progress=False)
    assert result.weights_path == out and result.best_epoch == 1 and len(result.val_accuracy) == 1
    return out, json.loads(result.sidecar_path.read_text())


def test_checkpoint_is_a_float16_state_dict(trained: tuple[Path, dict]) -> None:
    path, _ = trained
    state = torch.load(path, weights_only=True)  # a plain dict of tensors: no code runs on load
    assert all(v.dtype in (torch.float16, torch.int64) for v in state.values())
    assert state["backbone.classifier.weight"].shape == (3, 1280)


def test_sidecar_records_the_run(trained: tuple[Path, dict]) -> None:
    path, meta = trained
    assert meta["status"] == "complete" and meta["arch"] == "efficientnet_lite0"
    assert meta["class_names"] == ["normal-cecum", "bbps-2-3", "bbps-0-1"] and meta["num_classes"] == 3
    assert (meta["n_train"], meta["n_val"], meta["epochs"], meta["best_epoch"]) == (6, 3, 1, 1)
    assert meta["weights_sha256"] == sha256_file(path)
    assert 0.0 <= meta["best_val_accuracy"] <= 1.0 and meta["seconds"] > 0
    assert {"torch", "timm", "torchvision", "numpy", "opencv"} <= set(meta["versions"])


def test_checkpoint_loads_through_its_sidecar(trained: tuple[Path, dict]) -> None:
    path, meta = trained
    model, loaded_meta = load_classifier(path)
    assert loaded_meta == meta and not model.training
    with torch.inference_mode():
        logits, features, _ = model(torch.zeros(1, 3, 224, 224))
    assert logits.shape == (1, 3) and features.shape == (1, 1280)


def test_resnet_without_weights_fails_before_decoding(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="checkpoint"):
        train_classifier(SPLIT_FILE, tmp_path / "r.pt", arch="resnet18", epochs=1, progress=False)


def test_augmentation_keeps_uint8_images() -> None:
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8)
    out = paper_augmentation()(image)
    assert out.dtype == torch.uint8 and out.shape == image.shape


def test_cli_arguments_have_defaults_and_an_example() -> None:
    parser = add_train_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--out", "m.pt"])
    assert (args.arch, args.epochs, args.batch_size, args.lr, args.threads) == \
        ("efficientnet_lite0", 20, 32, 1e-4, 2)
    assert "example" in parser.format_help() and "--trust-pickle" in parser.format_help()
