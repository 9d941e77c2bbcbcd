"""`model.arch` in the monitor's config (issue 17): a bare torchvision / timm state dict or a .pt2 program is
served without a sidecar, the detector still has to belong to that model file, and an arch without a
checkpoint is a start-up problem named by its field."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torchvision
from torch.export import Dim

from stream_monitor.config import ModelConfig, MonitorConfig
from stream_monitor.errors import ArtifactError
from stream_monitor.models.registry import load_model_file, sha256_file
from stream_monitor.nero import NeroDetector
from stream_monitor.pipeline.inference import load_scorer
from stream_monitor.pipeline.preflight import StartupError, check_startup

C = 3


def _fit_detector(model, path, checkpoint) -> None:
    images = torch.randn(24, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        features = model(images)[1].double().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 16 samples clip the PCA components
        det = NeroDetector(mode="robust").fit(features[:16], np.arange(16) % C, *model.head_arrays(),
                                              model_sha256=sha256_file(checkpoint))
        det.calibrate(features[16:])
    det.save(path)


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("bare")
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v3_small(weights=None, num_classes=C).eval()
    torch.save(net.state_dict(), folder / "mnv3.pth")
    program = torch.export.export(net, (torch.zeros(2, 3, 224, 224),), dynamic_shapes={"x": {0: Dim("batch", max=64)}})
    torch.export.save(program, folder / "mnv3.pt2")
    for name, arch in (("mnv3.pth", "torchvision:mobilenet_v3_small"), ("mnv3.pt2", None)):
        model, _ = load_model_file(folder / name, arch=arch, num_classes=C)
        _fit_detector(model, folder / f"{name}.npz", folder / name)
    yield folder
    torch.set_num_threads(threads)


def test_a_bare_state_dict_is_served_with_model_arch(bare) -> None:
    config = ModelConfig(checkpoint=bare / "mnv3.pth", detector=bare / "mnv3.pth.npz", arch="torchvision:mobilenet_v3_small",
                         num_classes=C, threads=1, backend="torch-cpu")
    scorer, info = load_scorer(config)
    assert info["arch"] == "torchvision:mobilenet_v3_small" and info["backend"] == "torch-cpu"
    batch = scorer.score_batch(np.zeros((2, 3, 224, 224), np.float32))
    assert batch.score.shape == (2,) and batch.heatmaps is None


def test_an_exported_program_needs_no_arch(bare) -> None:
    scorer, info = load_scorer(ModelConfig(checkpoint=bare / "mnv3.pt2", detector=bare / "mnv3.pt2.npz", threads=1,
                                           backend="torch-cpu"))
    assert info["arch"] == "export:mnv3.pt2" and np.isfinite(scorer.score_batch(np.zeros((1, 3, 224, 224), np.float32)).score).all()


def test_a_detector_of_the_same_weights_in_another_file_is_refused(bare) -> None:
    """The .pt2 holds the very same weights and head, but the detector is bound to the file it was fitted on."""
    with pytest.raises(ArtifactError, match="re-fit the detector"):
        load_scorer(ModelConfig(checkpoint=bare / "mnv3.pt2", detector=bare / "mnv3.pth.npz", threads=1))


def test_arch_without_checkpoint_is_a_named_startup_problem(tmp_path) -> None:
    config = MonitorConfig.model_validate({
        "streams": [{"name": "s", "source": {"kind": "folder", "path": str(tmp_path)}}],
        "model": {"arch": "timm:convnext_tiny", "num_classes": 3}, "metrics": {"port": 0},
        "transport": {"results": f"ipc://{tmp_path}/r.sock", "frames": None}})
    with pytest.raises(StartupError, match="model.arch / num_classes / head describe model.checkpoint"):
        check_startup(config)
