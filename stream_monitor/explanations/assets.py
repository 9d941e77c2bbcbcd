"""The explanation artifact that sits beside a detector: the patch map and the neuron atlas, fitted once.

    nero_default.npz            the detector
    nero_default.explain.npz    its explanations (this file): patch memory, ID offset, neuron thumbnails

One `.npz` written with `artifact.write_artifact` (plain arrays + checksummed JSON metadata, no pickle),
tied to the classifier head it was fitted with. `python -m stream_monitor.explanations.assets --help` fits
one from the committed split (the bundled one was made that way).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import artifact
from ..errors import ArtifactError, InputError
from ..nero import NeroDetector
from .neurons import NeuronAtlas
from .patch import PatchExplainer, PatchMapSettings, forward_with_blocks

__all__ = ["ARTIFACT_KIND", "ExplanationAssets", "explanation_path", "fit_explanations", "load_beside", "refine_batch"]

ARTIFACT_KIND = "explanations"


def explanation_path(detector_path: str | os.PathLike) -> Path:
    """`x.npz` → `x.explain.npz`, the file beside the detector."""
    return Path(detector_path).with_suffix(".explain.npz")


@dataclass(frozen=True)
class ExplanationAssets:
    """patch: the patch map (explanations/patch.py), or None while it does not measure better than the live
    heatmap (docs/results/explanations; then the channel-deviation heatmap stays); atlas: neuron
    thumbnails (explanations/neurons.py);
    head_sha256: the classifier head both were fitted with; score_terms: what the detector's score is
    made of ("distance", "bias", "rho", "residual"), so that viewers name only those."""

    patch: PatchExplainer | None
    atlas: NeuronAtlas
    head_sha256: str
    score_terms: tuple[str, ...] = ("residual",)

    def save(self, path: str | os.PathLike) -> None:
        arrays = {**(self.patch.arrays() if self.patch else {}), **self.atlas.to_arrays()}
        meta = {"kind": ARTIFACT_KIND, "patch": self.patch.metadata() if self.patch else None,
                "head_sha256": self.head_sha256,
                "atlas": {"thumb": self.atlas.thumb, "per_neuron": self.atlas.per_neuron},
                "score_terms": list(self.score_terms),
                "created_at": artifact.utc_now(), "versions": artifact.library_versions()}
        artifact.write_artifact(path, arrays, meta)

    @classmethod
    def load(cls, path: str | os.PathLike, weight: np.ndarray | None = None,
             bias: np.ndarray | None = None) -> "ExplanationAssets":
        arrays, meta = artifact.read_artifact(path)
        if meta.get("kind") != ARTIFACT_KIND:
            raise ArtifactError(f"{path} holds a {meta.get('kind')!r} artifact, not explanations")
        if weight is not None and bias is not None and artifact.head_sha256(weight, bias) != meta.get("head_sha256"):
            raise ArtifactError(f"{path} was fitted for another classifier head; re-fit it for this model")
        try:
            atlas = NeuronAtlas.from_arrays(arrays, **meta["atlas"])
        except (InputError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{path}: invalid neuron atlas ({exc})") from exc
        patch = PatchExplainer.from_parts(arrays, meta["patch"], str(path)) if meta.get("patch") else None
        return cls(patch, atlas, meta["head_sha256"],
                   tuple(meta.get("score_terms", ())))


def refine_batch(assets: ExplanationAssets, scored, images: np.ndarray, relevance: np.ndarray, features: np.ndarray,
                 descriptors, detector: NeroDetector, top_n: int):
    """A `ScoredBatch` with the validated explanation: the patch map as its heatmaps (when descriptors
    are given and the batch has heatmaps on) and, for a detector that scores the relevance residual, the
    neurons that drive that score (signed: + fires more / − less than on ID frames) as its top neurons."""
    changes = {}
    if assets.patch is not None and descriptors is not None and scored.heatmaps is not None:
        changes["heatmaps"] = assets.patch.heatmaps(assets.patch.maps_from_descriptors(descriptors, images))
    if detector.config.use_residual and top_n > 0:
        arrays = detector.fitted_arrays()
        top, signed = assets.atlas.signed_drivers(relevance, features, arrays["pca_mean"], arrays["pca_components"], top_n)
        changes.update(top_neurons=top, deviations=signed)
    return dataclasses.replace(scored, **changes) if changes else scored


def load_beside(detector_path: str | os.PathLike, weight: np.ndarray | None = None,
                bias: np.ndarray | None = None) -> ExplanationAssets | None:
    """The explanations beside a detector file, or None when it has none."""
    path = explanation_path(detector_path)
    return ExplanationAssets.load(path, weight, bias) if path.exists() else None


def score_terms(detector: NeroDetector) -> tuple[str, ...]:
    """The parts the detector's score is made of, in NeroParts' order."""
    cfg = detector.config
    used = (("distance", cfg.use_distance), ("bias", cfg.use_bias), ("rho", cfg.use_rho), ("residual", cfg.use_residual))
    return tuple(name for name, on in used if on)


def fit_explanations(model, detector: NeroDetector, train_images: np.ndarray, held_out_images: np.ndarray,
                     settings: PatchMapSettings | None = PatchMapSettings()) -> ExplanationAssets:
    """From ID frames, (N, 3, 224, 224) float32 normalised: the atlas and (unless settings is None) the
    patch memory from the training frames, the patch map's offset from the held-out ones."""
    from .patch import denormalize

    patch = PatchExplainer.fit(model, train_images, held_out_images, settings) if settings is not None else None
    maps = []
    with torch.inference_mode():
        for start in range(0, len(train_images), 32):
            _, feature_map, _ = forward_with_blocks(model, torch.from_numpy(train_images[start:start + 32]), ())
            maps.append(feature_map.numpy())
    atlas = NeuronAtlas.fit(np.concatenate(maps), denormalize(train_images))
    weight, bias = model.head_arrays()
    return ExplanationAssets(patch, atlas, artifact.head_sha256(weight, bias), score_terms(detector))


PATCH_FAMILY = "patch map"
MEASURES = ("pointing_game", "mass_lift", "auroc_inside")


def validated_patch_settings(measured: dict) -> PatchMapSettings | None:
    """The patch map's chosen settings when, on the report part of every masked set, it beats every other
    map on all three measures (explanation_run's maps.json); else None (the live heatmap stays)."""
    families = {r["family"]: r for r in measured["results"]}
    patch = next((r for name, r in families.items() if name.startswith(PATCH_FAMILY)), None)
    if patch is None:
        return None
    for name, other in families.items():
        if other is patch:
            continue
        for set_name, parts in patch["measures"].items():
            mine, theirs = parts["report"], other["measures"][set_name]["report"]
            if any(mine[m] <= theirs[m] for m in MEASURES):
                return None
    chosen = patch["chosen"]
    return PatchMapSettings(layer=chosen["layer"], coreset=int(chosen["coreset"]), sigma=float(chosen["sigma"]),
                            quantile=chosen["quantile"])


def main(argv: list[str] | None = None) -> int:
    """Fit the explanations of the bundled model (or another) from the committed split."""
    from .. import bundled
    from ..data.images import read_image
    from ..data.split import load_split
    from ..models.registry import load_classifier
    from ..preprocess import normalize_uint8, to_model_rgb

    parser = argparse.ArgumentParser(description=main.__doc__ + "\n\nexample:\n  python -m stream_monitor.explanations.assets "
                                     "--out stream_monitor/assets/nero_default.explain.npz",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=bundled.MODEL)
    parser.add_argument("--detector", type=Path, default=bundled.DETECTOR, help="checked to belong to the model")
    parser.add_argument("--split", type=Path, default=Path(__file__).resolve().parents[1] / "configs" / "splits" / "hyperkvasir-lgi.json")
    parser.add_argument("--patch-map", choices=("auto", "off"), default="auto",
                        help="auto: include the patch map, with the settings chosen there, only when --measured says it "
                             "beats every baseline map on all three measures in every masked set (report part)")
    parser.add_argument("--measured", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "results"
                        / "explanations" / "maps.json", help="explanation_run's maps.json")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, _ = load_classifier(args.model)
    detector = NeroDetector.load(args.detector, *model.head_arrays())
    split = load_split(args.split)
    frames = {s: normalize_uint8(np.stack([to_model_rgb(read_image(p)) for p in split.paths(s)])) for s in ("train", "val")}
    settings = validated_patch_settings(json.loads(args.measured.read_text())) if args.patch_map == "auto" else None
    fit_explanations(model, detector, frames["train"], frames["val"], settings).save(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB): patch map {settings or 'not included'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
