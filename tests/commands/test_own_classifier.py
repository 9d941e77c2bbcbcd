"""Bring your own classifier and data, as a user types it (issue 17): two architectures that do not ship
(a timm CNN with a heatmap, a timm ViT without one), random init and one short training epoch on a few
real HyperKvasir images in class folders → fit → eval → a real `run` of the live monitor on the CPU.

Nothing is downloaded (pretrained weights are refused, HF_HUB_OFFLINE is set), and the data is symlinked
from ../shared/data, never copied.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from stream_monitor.cli import main
from stream_monitor.config import ModelConfig
from stream_monitor.errors import ArtifactError
from stream_monitor.evaluation.datasets import SHARED_DATA
from stream_monitor.models.registry import load_classifier, sha256_file
from stream_monitor.nero import NeroDetector
from stream_monitor.pipeline.audit import read_audit_log
from stream_monitor.pipeline.inference import load_scorer

pytestmark = pytest.mark.slow  # two trainings, two live runs: about a minute on an idle 2-core machine

HYPERKVASIR = SHARED_DATA / "hyperkvasir-lgi"
ID_CLASSES = ("bbps-0-1", "bbps-2-3", "normal-cecum")
# A CNN whose map pools to the feature (heatmaps in the live path) and a ViT (CLS token: none).
ARCHS = ("timm:regnetx_002", "timm:vit_tiny_patch16_224")
LIVE_FRAMES = 6


def _link(folder: Path, class_name: str, start: int, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted((HYPERKVASIR / class_name).glob("*.jpg"))[start:start + count]
    assert len(files) == count, f"development data missing at {HYPERKVASIR}"
    for source in files:
        (folder / source.name).symlink_to(source)


@pytest.fixture(scope="module")
def own_data(tmp_path_factory) -> dict[str, Path]:
    """data/train/<class>, data/val/<class>: the user's folders; data/test and data/polyp: frames to evaluate."""
    root = tmp_path_factory.mktemp("own-data")
    for class_name in ID_CLASSES:
        _link(root / "train" / class_name, class_name, 0, 6)
        _link(root / "val" / class_name, class_name, 6, 4)
        _link(root / "test" / class_name, class_name, 10, 2)
    _link(root / "polyp", "polyp", 0, LIVE_FRAMES)
    return {name: root / name for name in ("train", "val", "test", "polyp")}


@pytest.fixture(scope="module", autouse=True)
def _offline_one_thread():
    os.environ["HF_HUB_OFFLINE"] = "1"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core runner: an OpenMP team of two waits at every barrier
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=ARCHS)
def fitted(request, own_data, tmp_path_factory) -> dict[str, Path]:
    """`train` then `fit` for one architecture, with the user's class folders (no split file)."""
    arch, work = request.param, tmp_path_factory.mktemp(request.param.replace(":", "-"))
    folders = ["--id-train", str(own_data["train"]), "--id-val", str(own_data["val"])]
    model, detector = work / "model.pt", work / "nero.npz"
    assert main(["train", "--arch", arch, "--no-pretrained", *folders, "--epochs", "1", "--batch-size", "6",
                 "--threads", "1", "--no-progress", "--out", str(model)]) == 0
    # 18 training images support at most 17 PCA components; the default configuration keeps 50.
    assert main(["fit", "--model", str(model), *folders, "--set", "pca_components=8", "--no-cache",
                 "--out", str(detector)]) == 0
    return {"arch": arch, "model": model, "detector": detector, "work": work}


def test_train_and_fit_record_the_architecture_and_the_split(fitted, own_data) -> None:
    model, meta = load_classifier(fitted["model"])
    assert meta["arch"] == model.arch == fitted["arch"] and meta["class_names"] == list(ID_CLASSES)
    split = json.loads(fitted["model"].with_suffix(".split.json").read_text())
    assert split["counts"] == {"train": 18, "val": 12, "test": 0, "ood": 0}
    assert meta["split_file_sha256"] == sha256_file(fitted["model"].with_suffix(".split.json"))
    detector = NeroDetector.load(fitted["detector"], *model.head_arrays(), model_sha256=sha256_file(fitted["model"]))
    assert detector.feature_dim == model.feature_dim and detector.threshold is not None
    assert json.loads(fitted["detector"].with_suffix(".split.json").read_text())["train"] == split["train"]


def test_eval_reports_nero_on_the_users_sets(fitted, own_data) -> None:
    out = fitted["work"] / "eval"
    assert main(["eval", "--model", str(fitted["model"]), "--id-train", str(own_data["train"]), "--id-val",
                 str(own_data["val"]), "--id-test", str(own_data["test"]), "--ood", f"polyp={own_data['polyp']}",
                 "--no-odin", "--no-cache", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    text = json.dumps(report)
    assert fitted["arch"] in text or fitted["model"].name in text
    assert "NERO" in text and "polyp" in text and (out / "report.md").is_file()


def test_the_live_monitor_runs_it_and_refuses_another_models_detector(fitted, own_data) -> None:
    """A short real `run`: capture process, engine (torch-cpu, fused NERO head) and audit log, every frame
    scored; and the model-hash check still refuses a detector fitted on the other architecture."""
    work = fitted["work"]
    audit = work / "alerts.jsonl"
    config = work / "monitor.yaml"
    config.write_text(f"""\
version: 1
instance: own{os.getpid()}
streams:
  - name: endo
    source: {{kind: folder, path: {own_data['polyp']}, fps: 10, lossless: true}}
model: {{checkpoint: {fitted['model']}, detector: {fitted['detector']}, threads: 1, backend: torch-cpu}}
pipeline: {{max_frame_size: [720, 576]}}
transport: {{results: "ipc://{work}/results.sock", frames: null}}
metrics: {{port: 0}}
audit: {{path: {audit}}}
""")
    assert main(["run", "--config", str(config), "--until-done", "--no-reload"]) == 0
    records = {r["event"]: r for r in read_audit_log(audit)}
    assert records["session_start"]["backend"] == "torch-cpu"
    assert records["session_end"]["frames_processed"] == LIVE_FRAMES

    with pytest.raises(ArtifactError, match="re-fit the detector"):
        load_scorer(ModelConfig(checkpoint=_retrained_copy(fitted["model"], work / "other.pt"),
                                detector=fitted["detector"], threads=1))


def _retrained_copy(model: Path, out: Path) -> Path:
    """The same architecture and head with one backbone weight changed, as another training run gives:
    only the model-file hash tells the detector that it was fitted on something else."""
    state = torch.load(model, weights_only=True)
    first = next(k for k, v in state.items() if v.is_floating_point() and "backbone" in k)
    state[first] = state[first] + 0.01
    torch.save(state, out)
    sidecar = json.loads(model.with_suffix(".json").read_text())
    out.with_suffix(".json").write_text(json.dumps({**sidecar, "weights_sha256": sha256_file(out)}))
    return out


def test_train_records_a_torchvision_head_and_reloads_from_the_sidecar(own_data, tmp_path) -> None:
    out = tmp_path / "mnv3.pt"
    assert main(["train", "--arch", "torchvision:mobilenet_v3_small", "--head", "classifier.3", "--no-pretrained",
                 "--id-dir", str(own_data["train"]), "--split-seed", "3", "--epochs", "1", "--batch-size", "6",
                 "--threads", "1", "--no-progress", "--out", str(out)]) == 0
    model, meta = load_classifier(out)
    assert (meta["arch"], meta["head"], model.head_name) == ("torchvision:mobilenet_v3_small", "classifier.3",
                                                             "classifier.3")
    assert json.loads(out.with_suffix(".split.json").read_text())["seed"] == 3
