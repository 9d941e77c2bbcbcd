"""The detector artifact: a faithful round trip, and a clear refusal of every kind of bad file."""

import json
import zipfile

import numpy as np
import pytest

from stream_monitor import artifact
from stream_monitor.errors import ArtifactError
from stream_monitor.nero import NeroDetector


@pytest.fixture
def fitted(problem):
    features, labels, weight, bias, _ = problem
    det = NeroDetector("robust", centroids_per_class=2).fit(
        features[:200], labels[:200], weight, bias, class_names=["cecum", "clean", "dirty"], model_sha256="ab" * 32
    )
    det.calibrate(features[200:])
    return det, features, weight, bias


def test_round_trip_reproduces_scores_and_metadata(fitted, tmp_path):
    det, features, weight, bias = fitted
    path = tmp_path / "nero.npz"
    det.save(path)
    loaded = NeroDetector.load(path, weight=weight, bias=bias, model_sha256="ab" * 32)
    np.testing.assert_array_equal(loaded.score(features), det.score(features))
    assert loaded.config == det.config and loaded.class_names == ["cecum", "clean", "dirty"]
    assert loaded.calibration == det.calibration and loaded.threshold == det.threshold
    arrays, meta = artifact.read_artifact(path)
    assert meta["format_version"] == artifact.FORMAT_VERSION and meta["kind"] == "nero"
    assert meta["feature_dim"] == 64 and meta["num_classes"] == 3
    assert set(meta["versions"]) >= {"stream_monitor", "numpy", "python"}
    assert meta["fit_info"]["head_sha256"] == artifact.head_sha256(weight, bias)
    assert meta["fit_info"]["created_at"].endswith("+00:00")
    with zipfile.ZipFile(path) as archive:  # plain .npy members: no pickled object anywhere
        assert all(name.endswith(".npy") for name in archive.namelist())


def test_truncated_file_is_named_in_the_error(fitted, tmp_path):
    det, *_ = fitted
    path = tmp_path / "nero.npz"
    det.save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ArtifactError, match=rf"{path.name}.*truncated or corrupt"):
        NeroDetector.load(path)


def test_flipped_bits_in_an_array_are_caught(fitted, tmp_path):
    det, *_ = fitted
    path = tmp_path / "nero.npz"
    det.save(path)
    arrays, meta = artifact.read_artifact(path)
    arrays["centroids"][0, 0] += 1e-9
    members = {k: v for k, v in arrays.items()}
    members[artifact.METADATA_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **members)
    with pytest.raises(ArtifactError, match="'centroids' does not match its checksum"):
        NeroDetector.load(path)


def test_newer_format_asks_for_an_upgrade(fitted, tmp_path, monkeypatch):
    det, *_ = fitted
    path = tmp_path / "nero.npz"
    monkeypatch.setattr(artifact, "FORMAT_VERSION", artifact.FORMAT_VERSION + 1)
    det.save(path)
    monkeypatch.undo()
    with pytest.raises(ArtifactError, match="newer than this stream-monitor.*upgrade"):
        NeroDetector.load(path)


def test_other_head_and_other_width_are_refused(fitted, tmp_path):
    det, _, weight, bias = fitted
    path = tmp_path / "nero.npz"
    det.save(path)
    with pytest.raises(ArtifactError, match="different classifier head"):
        NeroDetector.load(path, weight=weight * 1.001, bias=bias)
    with pytest.raises(ArtifactError, match="width D = 64.*D = 32"):
        NeroDetector.load(path, weight=weight[:, :32], bias=bias)
    with pytest.raises(ArtifactError, match="model file sha256"):
        NeroDetector.load(path, model_sha256="cd" * 32)


def test_missing_file_and_foreign_file(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        NeroDetector.load(tmp_path / "nope.npz")
    np.savez(tmp_path / "plain.npz", x=np.zeros(3))
    with pytest.raises(ArtifactError, match="not a stream-monitor artifact"):
        NeroDetector.load(tmp_path / "plain.npz")
    artifact.write_artifact(tmp_path / "other.npz", {"x": np.zeros(3)}, {"kind": "knn"})
    with pytest.raises(ArtifactError, match="not a NERO detector"):
        NeroDetector.load(tmp_path / "other.npz")


def test_a_failed_write_keeps_the_previous_artifact(fitted, tmp_path, monkeypatch):
    """A full disk mid-save must not destroy the artifact a running monitor depends on."""
    det, features, *_ = fitted
    path = tmp_path / "nero.npz"
    det.save(path)
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(ArtifactError, match="No space left on device"):
        det.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["nero.npz"]  # no temporary file left behind
