"""Fixtures shared by the live-path tests (capture, pipeline, transport, overlay, live commands).

`no_leaks` fails a test that leaves a socket (ZeroMQ, TCP, the eventfds of a ZeroMQ context), a child
process or a shared-memory ring it created behind; each live-path folder's conftest turns it on for every
test. It only looks at this process and the rings this process created: the machine is shared, and
other monitors (another engineer's demo, a benchmark) may create and remove rings at any time. Tests
that run the CLI in a subprocess check their own ring by name.
`live_model` is a real classifier with a NERO detector fitted in seconds on a few real ID images;
`e2e_clip` is a real MP4 of ID → OOD → ID endoscopy frames with a threshold that every ID frame of it
scores well below and every OOD frame well above, so that end-to-end tests check the pipeline's
behaviour (alert on the OOD segment, none on the ID segments) rather than the detector's quality, which
benchmarks/alert_timing.py measures on whole data sets.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import shutil
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
_FD_KINDS = ("socket:", "anon_inode:[eventfd]", "anon_inode:[eventpoll]")


def _open_fds() -> dict[int, str]:
    found = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith(_FD_KINDS):
            found[int(name)] = target
    return found


def ring_exists(name: str) -> bool:
    """Whether a shared-memory segment of this name exists (Linux: a file in /dev/shm)."""
    return os.path.exists(f"/dev/shm/{name}")


@pytest.fixture
def no_leaks(monkeypatch):
    """Fail the test if it leaves sockets, child processes or rings it created behind (cleaning them up)."""
    from stream_monitor.capture.ring import FrameRing

    created: list[str] = []
    original = FrameRing.create.__func__

    def recording_create(cls, name, *args, **kwargs):
        created.append(name)
        return original(cls, name, *args, **kwargs)

    monkeypatch.setattr(FrameRing, "create", classmethod(recording_create))
    gc.collect()
    fds = _open_fds()
    yield
    deadline = time.monotonic() + 5.0  # ZeroMQ's reaper and HTTP handler threads close asynchronously
    while True:
        gc.collect()
        leaked = {fd: target for fd, target in _open_fds().items() if fds.get(fd) != target}
        children = multiprocessing.active_children()
        new_rings = {name for name in created if ring_exists(name)}
        if not (leaked or children or new_rings) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for child in children:
        child.kill()
        child.join(5)
    for name in new_rings:
        os.unlink(f"/dev/shm/{name}")
    problems = []
    if leaked:
        problems.append(f"{len(leaked)} socket / eventfd descriptor(s) left open: {sorted(set(leaked.values()))[:5]}")
    if children:
        problems.append(f"child processes left running: {[c.name for c in children]}")
    if new_rings:
        problems.append(f"shared-memory rings not unlinked: {sorted(new_rings)}")
    if problems:
        pytest.fail("resource leak: " + "; ".join(problems))


@pytest.fixture
def free_port():
    """A function returning a TCP port on 127.0.0.1 that was free a moment ago."""
    def pick() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]
    return pick


def _need_data() -> None:
    if not (SHARED_DATA / "hyperkvasir-lgi").is_dir():
        pytest.fail(f"development data not found at {SHARED_DATA}: the tests run on it (README: put the "
                    f"shared data beside the repo)")


@dataclass(frozen=True)
class LiveModel:
    checkpoint: Path
    detector: Path
    threshold: float


@pytest.fixture(scope="session")
def live_model(tmp_path_factory) -> LiveModel:
    """The bundled classifier (or, before it exists, ImageNet EfficientNet-Lite0 with a 3-class head) and a
    NERO detector fitted on 30 ID training images and calibrated on 20 ID validation images."""
    import torch

    from stream_monitor import bundled
    from stream_monitor.data.images import read_image
    from stream_monitor.data.split import load_split
    from stream_monitor.evaluation.datasets import DEFAULT_SPLIT
    from stream_monitor.models.registry import create_model, load_classifier, sha256_file
    from stream_monitor.nero import NeroDetector
    from stream_monitor.preprocess import preprocess_batch

    _need_data()
    folder = tmp_path_factory.mktemp("live-model")
    checkpoint = folder / "classifier.pt"
    if bundled.MODEL.exists() and bundled.MODEL.with_suffix(".json").exists():
        shutil.copy(bundled.MODEL, checkpoint)
        shutil.copy(bundled.MODEL.with_suffix(".json"), checkpoint.with_suffix(".json"))
    else:
        model = create_model("efficientnet_lite0", 3, pretrained=True)
        torch.save(model.state_dict(), checkpoint)
        checkpoint.with_suffix(".json").write_text(json.dumps(
            {"arch": "efficientnet_lite0", "num_classes": 3, "weights_sha256": sha256_file(checkpoint)}))
    model, _ = load_classifier(checkpoint)
    torch.set_num_threads(1)  # the machine is shared; one thread is also what the live tests configure
    split = load_split(DEFAULT_SPLIT)
    train = split.paths("train")[::9][:30]
    labels = split.labels("train")[::9][:30]

    def features(paths):
        with torch.inference_mode():
            return model(torch.from_numpy(preprocess_batch([read_image(p) for p in paths])))[1].double().numpy()

    weight, bias = model.head_arrays()
    with warnings.catch_warnings():  # 30 samples: PCA is clipped to their rank, as expected
        warnings.simplefilter("ignore", UserWarning)
        detector = NeroDetector(mode="robust").fit(features(train), labels, weight, bias, class_names=list(split.id_classes),
                                                   model_sha256=sha256_file(checkpoint))
    detector.calibrate(features(split.paths("val")[::5][:20]))
    path = folder / "nero.npz"
    detector.save(path)
    return LiveModel(checkpoint, path, detector.threshold)


@dataclass(frozen=True)
class E2EClip:
    path: Path
    fps: float
    hold: int
    segments: list[tuple[str, int, int]]  # (label, first frame, stop frame), 0-based
    threshold: float  # every ID frame scores below threshold / √2, every OOD frame above threshold · √2

    def label_of(self, frame: int) -> str:
        return next(label for label, start, stop in self.segments if start <= frame < stop)


@pytest.fixture(scope="session")
def e2e_clip(live_model, tmp_path_factory) -> E2EClip:
    """ID (8 images) → OOD (8) → ID (8), each image held 2 frames, 10 fps, 640 × 540, mp4v: real frames
    picked by their score after an MP4 round trip — the 16 lowest-scoring of 48 ID test images and the 8
    highest of 48 OOD images (HyperKvasir polyps, CVC-ClinicDB frames) — and a threshold at the geometric
    mean of the two groups' nearest scores, which must be at least a factor 2 apart."""
    import cv2

    from stream_monitor.capture.scope_mask import ScopeMasker
    from stream_monitor.data.images import list_images, read_image
    from stream_monitor.data.split import load_split
    from stream_monitor.demo.clip import CANVAS
    from stream_monitor.engine import Scorer
    from stream_monitor.evaluation.datasets import DEFAULT_SPLIT
    from stream_monitor.models.registry import load_classifier
    from stream_monitor.nero import NeroDetector
    from stream_monitor.preprocess import normalize_uint8, to_model_rgb

    _need_data()
    folder = tmp_path_factory.mktemp("e2e-clip")
    model, _ = load_classifier(live_model.checkpoint)
    weight, bias = model.head_arrays()
    scorer = Scorer(model, NeroDetector.load(live_model.detector, weight=weight, bias=bias), heatmaps=False)

    def round_trip_scores(images):
        probe = folder / "probe.mp4"
        writer = cv2.VideoWriter(str(probe), cv2.VideoWriter_fourcc(*"mp4v"), 10, CANVAS)
        for image in images:
            writer.write(image)
        writer.release()
        capture, decoded = cv2.VideoCapture(str(probe)), []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            decoded.append(to_model_rgb(ScopeMasker().apply(frame)))
        capture.release()
        return scorer.score_batch(normalize_uint8(np.stack(decoded))).score

    def canvas(path):
        return cv2.resize(read_image(path), CANVAS, interpolation=cv2.INTER_AREA)

    id_images = [canvas(p) for p in load_split(DEFAULT_SPLIT).paths("test")[:48]]
    ood_paths = list_images(SHARED_DATA / "hyperkvasir-lgi" / "polyp")[:24] + \
        list_images(SHARED_DATA / "sequences" / "cvc-clinicdb", recursive=True)[::10][:24]
    ood_images = [canvas(p) for p in ood_paths]
    id_scores, ood_scores = round_trip_scores(id_images), round_trip_scores(ood_images)
    low_order, high_order = np.argsort(id_scores)[:16], np.argsort(-ood_scores)[:8]
    top_id, bottom_ood = id_scores[low_order[-1]], ood_scores[high_order[-1]]
    if not bottom_ood > 2 * top_id > 0:
        pytest.fail(f"this model/detector no longer separates 16 ID from 8 OOD frames by a factor 2 "
                    f"({top_id:.3g} vs {bottom_ood:.3g})")
    threshold = float(np.sqrt(top_id * bottom_ood))
    low, high = [id_images[i] for i in low_order], [ood_images[i] for i in high_order]
    hold, path = 2, folder / "id_ood_id.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, CANVAS)
    for image in low[:8] + high[:8] + low[8:16]:
        for _ in range(hold):
            writer.write(image)
    writer.release()
    return E2EClip(path, 10.0, hold, [("ID", 0, 16), ("OOD", 16, 32), ("ID", 32, 48)], threshold)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    _need_data()
    return SHARED_DATA
