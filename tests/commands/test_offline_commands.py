"""fit, eval, explain and inspect, end to end through the CLI on real images and a real (tiny) model."""

import json

import numpy as np
import pytest

from stream_monitor.cli import main
from stream_monitor.errors import ArtifactError
from stream_monitor.models.registry import load_classifier, sha256_file
from stream_monitor.nero import NeroDetector

from .conftest import HYPERKVASIR

METRICS = {"auroc", "fpr95", "fpr95_ood_positive", "aupr_in", "aupr_out"}


@pytest.fixture(scope="module")
def fitted(tiny_model, tiny_split, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "nero.npz"
    assert main(["fit", "--model", str(tiny_model), "--split", str(tiny_split), "--mode", "robust",
                 "--set", "centroids_per_class=1", "--out", str(out), "--no-cache"]) == 0
    return out


def test_fit_writes_an_artifact_bound_to_the_model(fitted, tiny_model, capsys):
    model, _ = load_classifier(tiny_model)
    weight, bias = model.head_arrays()
    det = NeroDetector.load(fitted, weight=weight, bias=bias, model_sha256=sha256_file(tiny_model))
    assert det.calibration is not None and det.calibration.n_validation == 6
    assert det.class_names == ["normal-cecum", "bbps-2-3", "bbps-0-1"]
    with pytest.raises(ArtifactError, match="model file sha256"):
        NeroDetector.load(fitted, model_sha256="0" * 64)
    assert main(["inspect", str(fitted)]) == 0
    assert "threshold" in capsys.readouterr().out


def test_fit_with_an_alert_detector_stores_it_beside_nero(fitted, tiny_model, tiny_split, tmp_path, capsys):
    """`fit --alert-detector NAME` fits NAME on the same split and stores it in the NERO artifact; an unknown
    name fails before any work, listing the servable ones."""
    from stream_monitor.baselines.serving import load_alert_detector

    out = tmp_path / "neco.npz"
    assert main(["fit", "--model", str(tiny_model), "--split", str(tiny_split), "--mode", "robust",
                 "--set", "centroids_per_class=1", "--alert-detector", "neco", "--out", str(out), "--no-cache"]) == 0
    assert "alert detector neco: threshold" in capsys.readouterr().out
    alert = load_alert_detector(out)
    assert alert is not None and alert.name == "neco" and alert.calibration.n_validation == 6
    plain, served = NeroDetector.load(fitted), NeroDetector.load(out)  # the same NERO, fitted the same way
    assert plain.threshold == served.threshold
    assert main(["fit", "--model", str(tiny_model), "--split", str(tiny_split), "--alert-detector", "nope",
                 "--out", str(tmp_path / "x.npz"), "--no-cache"]) != 0
    assert "unknown --alert-detector 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_eval_reports_every_method_for_every_ood_set(tiny_model, tiny_split, tiny_root, tmp_path):
    out = tmp_path / "report"
    args = ["eval", "--model", str(tiny_model), "--split", str(tiny_split), "--out", str(out), "--no-cache",
            "--no-fusions",  # tests/test_fusion.py covers them; here they would double the run time
            "--ood", f"polyp={tiny_root / 'polyp'}", "--ood", f"stool={tiny_root / 'impacted-stool'}"]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    results = report["results"]
    expected = {"nero_parity", "nero_robust", "msp", "odin", "energy", "entropy", "max_logit", "mahalanobis",
                "vim", "neco", "react", "gradnorm", "knn", "ash", "scale", "gen"}
    assert expected <= set(results)
    for method, per_set in results.items():
        assert set(per_set) == {"polyp", "stool"}, method
        for entry in per_set.values():
            assert METRICS <= set(entry) and all(0 <= entry[k] <= 1 for k in METRICS)
            assert entry["n_id"] == 6 and entry["n_ood"] in (6, 4)
    assert "FPR95" in report["conventions"]["fpr95"] or "ID accepted" in report["conventions"]["fpr95"]
    rows = (out / "report.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * len(results)
    assert (out / "report.md").read_text().startswith("# OOD evaluation report")
    assert len(list(out.glob("roc_*.png"))) == 2 and list(out.glob("hist_*.png"))


def test_eval_selects_a_default_on_validation_ood_only(tiny_model, tiny_split, tiny_root, tmp_path):
    """The selection sees validation OOD images; test OOD images must not change what it picks."""
    from stream_monitor.data.split import load_split
    from stream_monitor.evaluation.datasets import Source, ood_validation_split
    from stream_monitor.evaluation.dev_benchmark import EvaluationInputs, evaluate_all

    model, _ = load_classifier(tiny_model)
    split = load_split(tiny_split)
    validation, test = ood_validation_split(split, fraction=0.5)
    assert not set(validation["polyp"]) & set(test["polyp"])

    def run(test_files, out):
        sources = [Source("ood", "files", files=tuple(test_files))]
        return evaluate_all(EvaluationInputs(model, split, sources, validation), out, None, odin=False, fusions=False)

    first = run(test["polyp"], tmp_path / "a")
    second = run(test["impacted-stool"], tmp_path / "b")
    assert first["selection"]["options"] == second["selection"]["options"]
    assert "nero_default" in first["results"] and first["ablation"]
    assert (tmp_path / "a" / "ablation.png").is_file()


def test_fit_can_calibrate_the_alert_over_the_capture_chain(fitted, tiny_model, tiny_split, tmp_path):
    """`--calibrate-over capture-chain`: the served detector's threshold is the highest of its thresholds on
    the ID validation frames after each benign change, so no changed validation frame scores above it (6
    frames: the 95 % threshold is the maximum); NERO's own threshold, which does not alert, is unchanged."""
    from stream_monitor.baselines.serving import load_alert_detector
    from stream_monitor.data.split import load_split
    from stream_monitor.evaluation.benign_changes import CHANGES, changed_features

    common = ["fit", "--model", str(tiny_model), "--split", str(tiny_split), "--mode", "robust",
              "--set", "centroids_per_class=1", "--alert-detector", "fusion z(neco)+z(bstats)", "--no-cache"]
    assert main([*common, "--out", str(tmp_path / "clean.npz")]) == 0
    assert main([*common, "--calibrate-over", "capture-chain", "--out", str(tmp_path / "chain.npz")]) == 0
    clean, chain = load_alert_detector(tmp_path / "clean.npz"), load_alert_detector(tmp_path / "chain.npz")
    assert chain.calibration.changes == [c for c in CHANGES if c != "none"] and clean.calibration.changes == []
    assert chain.threshold >= clean.threshold
    model, _ = load_classifier(tiny_model)
    val = load_split(tiny_split).paths("val")
    worst = max(chain.score(changed_features(model, val, c, with_stats=True)).max() for c in CHANGES)
    assert worst == pytest.approx(chain.threshold, rel=1e-6)  # the worst change's worst frame sets it
    assert NeroDetector.load(tmp_path / "chain.npz").threshold == NeroDetector.load(fitted).threshold
    # without a served detector NERO raises the alert, so NERO's own threshold is the one moved
    assert main([*common[:-3], "--no-cache", "--calibrate-over", "capture-chain", "--out", str(tmp_path / "nero.npz")]) == 0
    nero = NeroDetector.load(tmp_path / "nero.npz")
    assert nero.calibration.changes == chain.calibration.changes and nero.threshold >= NeroDetector.load(fitted).threshold


def test_fit_can_fit_the_alert_over_the_capture_chain(fitted, tiny_model, tiny_split, tmp_path, capsys):
    """`--fit-over capture-chain`: the served fusion is exactly the one fitted on the train frames plus a copy of
    each after every benign change, standardised out of fold by source image; NERO's arrays stay the clean fit."""
    from stream_monitor.baselines.fusion import ZScoreFusion, fusion_factories
    from stream_monitor.baselines.serving import load_alert_detector
    from stream_monitor.data.split import load_split
    from stream_monitor.evaluation.benign_changes import CHANGES, changed_features

    name = "fusion z(neco)+z(bstats)"
    out = tmp_path / "fit-over.npz"
    assert main(["fit", "--model", str(tiny_model), "--split", str(tiny_split), "--mode", "robust",
                 "--set", "centroids_per_class=1", "--alert-detector", name, "--no-cache",
                 "--fit-over", "capture-chain", "--out", str(out)]) == 0
    alert = load_alert_detector(out)
    changes = [c for c in CHANGES if c != "none"]
    assert alert.fit_changes == changes
    model, _ = load_classifier(tiny_model)
    split = load_split(tiny_split)
    train, labels = split.paths("train"), np.asarray(split.labels("train"))
    stacked = np.vstack([changed_features(model, train, c, with_stats=True) for c in ["none", *changes]])
    views = len(changes) + 1
    expected = fusion_factories()[name]()
    assert isinstance(expected, ZScoreFusion)
    expected.fit(stacked.astype(np.float64), np.tile(labels, views), *model.head_arrays(),
                 groups=np.tile(np.arange(len(labels)), views))
    val = changed_features(model, split.paths("val"), "none", with_stats=True)
    np.testing.assert_allclose(alert.score(val), expected.score(val), rtol=1e-5, atol=1e-6)
    assert NeroDetector.load(out).threshold == NeroDetector.load(fitted).threshold
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    fit_line = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("alert fit")]
    assert fit_line and f"after every one of {len(changes)} capture-chain changes" in fit_line[0]


def test_fit_over_the_capture_chain_needs_an_alert_detector(tiny_model, tiny_split, tmp_path, capsys):
    code = main(["fit", "--model", str(tiny_model), "--split", str(tiny_split), "--fit-over", "capture-chain",
                 "--out", str(tmp_path / "nero.npz")])
    assert code != 0 and "--alert-detector" in capsys.readouterr().err
    assert not (tmp_path / "nero.npz").exists()


def test_explain_writes_figures_and_parts(fitted, tiny_model, tmp_path, capsys):
    images = sorted((HYPERKVASIR / "polyp").glob("*.jpg"))[:2]
    out = tmp_path / "why"
    assert main(["explain", *map(str, images), "--model", str(tiny_model), "--detector", str(fitted),
                 "--top", "5", "--out", str(out)]) == 0
    records = json.loads((out / "explanations.json").read_text())
    assert len(records) == 2
    for record in records:
        assert len(record["top_neurons"]) == 5 and len(record["deviations"]) == 5
        assert np.isclose(record["score"], (record["distance"] + record["bias_term"]) * record["rho"])
        assert (out / f"{record['image'].split('/')[-1].rsplit('.', 1)[0]}_explain.png").is_file()


def test_explain_gives_the_live_verdict_of_a_served_detector(tmp_path):
    """With the bundled artifact (it serves fusion z(neco)+z(bstats)) explain decides as the live monitor
    does: the served detector's score, threshold and parts, with NERO's own score beside it as the
    explanation, not NERO's verdict on its own threshold."""
    from stream_monitor import bundled
    from stream_monitor.baselines.serving import load_alert_detector

    served = load_alert_detector(bundled.DETECTOR)
    images = sorted((HYPERKVASIR / "polyp").glob("*.jpg"))[:2]
    out = tmp_path / "why"
    assert main(["explain", *map(str, images), "--out", str(out)]) == 0
    for record in json.loads((out / "explanations.json").read_text()):
        assert record["detector"] == served.name and record["threshold"] == served.threshold
        assert record["flagged"] == (record["score"] > served.threshold)
        assert set(record["components"]) == {"neco", "bstats"}
        assert np.isclose(sum(record["components"].values()), record["score"], rtol=1e-12)
        assert record["nero_threshold"] == NeroDetector.load(bundled.DETECTOR).calibration.threshold
        assert record["nero_score"] != record["score"]
        # a flagged frame is explained by the validated scene map the bundled explanation artifact carries
        assert record["flagged"]  # the precondition: these polyps alert
        assert record["map"].startswith("scene map") and record["map_peak"] is not None


def test_commands_fail_with_one_clear_line(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.npz")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", "--out", str(tmp_path), "--ood", "no-equals-sign"]) == 1
    assert "NAME=PATH" in capsys.readouterr().err


@pytest.mark.parametrize("arch", ["resnet18", "deit_small_patch16_224"])
def test_fit_takes_a_bare_checkpoint_of_other_architectures(arch, tiny_split, tmp_path):
    """A user's ResNet-18 / DeiT-S weights (a bare state dict, no sidecar) go through the same command."""
    import torch

    from stream_monitor.models.registry import create_model

    torch.manual_seed(0)
    checkpoint = tmp_path / f"{arch}.pth"
    torch.save(create_model(arch, 3, pretrained=False).backbone.state_dict(), checkpoint)  # bare model keys
    out = tmp_path / "nero.npz"
    assert main(["fit", "--model", str(checkpoint), "--arch", arch, "--num-classes", "3", "--split", str(tiny_split),
                 "--mode", "robust", "--out", str(out), "--no-cache"]) == 0
    det = NeroDetector.load(out, model_sha256=sha256_file(checkpoint))
    assert det.feature_dim == {"resnet18": 512, "deit_small_patch16_224": 384}[arch]
    assert main(["fit", "--model", str(checkpoint), "--arch", arch, "--split", str(tiny_split), "--out", str(out)]) == 1


def test_fit_passes_alert_options_to_the_served_detector(tiny_model, tiny_split, tmp_path, capsys):
    """`--alert-option bstats.shrinkage=0.3` reaches the fusion's component and is stored; `inspect` shows it."""
    from stream_monitor.baselines.serving import load_alert_detector

    out = tmp_path / "shrunk.npz"
    assert main(["fit", "--model", str(tiny_model), "--split", str(tiny_split), "--mode", "robust",
                 "--set", "centroids_per_class=1", "--alert-detector", "fusion z(neco)+z(bstats)", "--no-cache",
                 "--alert-option", "bstats.shrinkage=0.3", "--out", str(out)]) == 0
    alert = load_alert_detector(out)
    assert alert.options == {"bstats": {"shrinkage": 0.3}}
    assert alert.detector.detectors_[1].shrinkage == 0.3
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    assert '"shrinkage": 0.3' in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--alert-detector", "fusion z(neco)+z(bstats)", "--alert-option", "shrinkage=0.3"], "COMPONENT.OPTION"),
    (["--alert-detector", "fusion z(neco)+z(bstats)", "--alert-option", "bstats.lambda=0.3"], "bad options"),
    (["--alert-option", "k=5"], "--alert-detector"),
])
def test_bad_alert_options_are_refused_and_write_nothing(extra, message, tiny_model, tiny_split, tmp_path, capsys):
    code = main(["fit", "--model", str(tiny_model), "--split", str(tiny_split), *extra,
                 "--out", str(tmp_path / "nero.npz")])
    assert code != 0 and message in capsys.readouterr().err
    assert not (tmp_path / "nero.npz").exists()
