"""The recipe options added for stable features: the capture-card augmentation, a validation-loss
checkpoint kept beside the paper's, and stopping once the paper's checkpoint can no longer change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tests.training.test_train import SPLIT_FILE, _tiny  # the same tiny real subset as the paper-recipe tests

from stream_monitor.data.split import load_split
from stream_monitor.errors import InputError
from stream_monitor.models import load_classifier, sha256_file
from stream_monitor.training.augment import RandomGamma, augmentation, capture_augmentation
from stream_monitor.training.train import kept_checkpoint_path, train_classifier


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    split = _tiny(load_split(SPLIT_FILE), {"train": 2, "val": 1})
    out = tmp_path_factory.mktemp("recipe") / "tiny.pt"
    result = train_classifier(split, out, epochs=2, batch_size=4, seed=0, num_threads=1, progress=False,
                              augment="paper+capture", keep=("val_loss",))
    return out, json.loads(result.sidecar_path.read_text())


def test_val_loss_checkpoint_is_the_lowest_loss_epoch_and_loads_alone(two_epochs) -> None:
    out, meta = two_epochs
    kept = kept_checkpoint_path(out, "val_loss")
    assert kept.name == "tiny.val-loss.pt" and len(meta["val_loss"]) == 2
    kept_meta = json.loads(kept.with_suffix(".json").read_text())
    best = min(range(2), key=lambda i: meta["val_loss"][i]) + 1
    assert kept_meta["checkpoint_rule"] == "val_loss" and kept_meta["best_epoch"] == best
    assert kept_meta["weights_sha256"] == sha256_file(kept)
    assert kept_meta["status"] == "complete"
    model, _ = load_classifier(kept)
    assert not model.training


def test_val_loss_checkpoint_is_not_marked_final_while_training_runs(tmp_path: Path, monkeypatch) -> None:
    """eval --seeds reuses a checkpoint whose sidecar says complete; mid-run the kept one can still change."""
    from stream_monitor.training import train as train_module

    written = []
    real_write = train_module._write_sidecar
    monkeypatch.setattr(train_module, "_write_sidecar",
                        lambda path, record: (written.append((Path(path).name, record["status"])), real_write(path, record)))
    split = _tiny(load_split(SPLIT_FILE), {"train": 2, "val": 1})
    train_classifier(split, tmp_path / "tiny.pt", epochs=2, batch_size=4, seed=0, num_threads=1, progress=False,
                     keep=("val_loss",))
    kept_writes = [status for name, status in written if name == "tiny.val-loss.json"]
    assert kept_writes[:-1] and all(status == "running" for status in kept_writes[:-1])
    assert kept_writes[-1] == "complete"


def test_sidecar_names_the_capture_recipe(two_epochs) -> None:
    _, meta = two_epochs
    assert meta["augment_recipe"] == "paper+capture" and "JPEG" in meta["augmentation"]


def test_capture_augmentation_keeps_uint8_and_moves_pixels() -> None:
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8)
    out = capture_augmentation()(image)
    assert out.dtype == torch.uint8 and out.shape == image.shape and not torch.equal(out, image)


def test_gamma_stays_within_its_spread() -> None:
    torch.manual_seed(1)
    image = torch.full((3, 8, 8), 128, dtype=torch.uint8)
    values = {int(RandomGamma(0.1)(image)[0, 0, 0]) for _ in range(50)}
    # 128/255 ** gamma for gamma in [0.9, 1.1] spans about 120..137
    assert min(values) >= 119 and max(values) <= 138 and len(values) > 5


def test_unknown_recipe_or_rule_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="recipe"):
        augmentation("paper+cutout")
    with pytest.raises(InputError, match="checkpoint rule"):
        train_classifier(SPLIT_FILE, tmp_path / "x.pt", epochs=1, keep=("val_auc",), progress=False)


def test_stop_when_final_keeps_the_checkpoint_a_full_run_keeps(tmp_path: Path, monkeypatch) -> None:
    """Scripted validation accuracies 0.5, 1.0, 1.0: the full run keeps epoch 2 (ties keep the earlier
    epoch), so the early-stopped run must stop after epoch 2 with the same best epoch and weights."""
    import stream_monitor.training.train as train_module

    def script() -> None:  # each run: the epochs' accuracies, then the float16 re-check at the end
        accuracies = iter([0.5, 1.0, 1.0])
        monkeypatch.setattr(train_module, "evaluate_accuracy_and_loss", lambda *a: (next(accuracies, 1.0), 0.1))

    split = _tiny(load_split(SPLIT_FILE), {"train": 1, "val": 1})
    script()
    full = train_classifier(split, tmp_path / "full.pt", epochs=3, batch_size=4, seed=0, num_threads=1, progress=False)
    script()
    early = train_classifier(split, tmp_path / "early.pt", epochs=3, batch_size=4, seed=0, num_threads=1,
                             progress=False, stop_when_final=True)
    full_meta, early_meta = (json.loads(r.sidecar_path.read_text()) for r in (full, early))
    assert len(full_meta["val_accuracy"]) == 3 and "stopped_after_epoch" not in full_meta
    assert early_meta["stopped_after_epoch"] == 2 == early_meta["best_epoch"] == full_meta["best_epoch"]
    # Tensors, not file hashes: torch.save names the archive's folder after the file.
    full_state, early_state = (torch.load(tmp_path / n, weights_only=True) for n in ("full.pt", "early.pt"))
    assert all(torch.equal(full_state[k], early_state[k]) for k in full_state)
