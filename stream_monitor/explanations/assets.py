"""The explanation artifact that sits beside a detector: the validated map and the neuron atlas, fitted once.

    nero_default.npz            the detector
    nero_default.explain.npz    its explanations (this file): the live map's settings (the scene map of
                                explanations/distinct.py, or a patch memory with its ID offset), neuron thumbnails

One `.npz` written with `artifact.write_artifact` (plain arrays + checksummed JSON metadata, no pickle),
tied to the classifier head it was fitted with. `python -m stream_monitor.explanations.assets --help` fits
one from the committed split (the bundled one was made that way).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .. import artifact
from ..errors import ArtifactError, InputError
from ..nero import NeroDetector
from ..preprocess import normalize_uint8
from .distinct import SceneMapSettings, scene_maps
from .neurons import NeuronAtlas
from .pacing import MapBudget
from .patch import PatchExplainer, PatchMapSettings, denormalize, forward_with_blocks

__all__ = ["ARTIFACT_KIND", "ExplanationAssets", "explanation_path", "fit_explanations", "load_beside", "map_kind",
           "refine_batch", "validated_patch_settings", "validated_scene_settings"]

ARTIFACT_KIND = "explanations"


def explanation_path(detector_path: str | os.PathLike) -> Path:
    """`x.npz` → `x.explain.npz`, the file beside the detector."""
    return Path(detector_path).with_suffix(".explain.npz")


@dataclass(frozen=True)
class ExplanationAssets:
    """patch: the patch map (explanations/patch.py), or None while it does not measure better than every
    other map (docs/results/explanations); atlas: neuron thumbnails (explanations/neurons.py);
    head_sha256: the classifier head both were fitted with; score_terms: what the detector's score is
    made of ("distance", "bias", "rho", "residual"), so that viewers name only those;
    scene: the scene map's settings (explanations/distinct.py), or None while it does not beat every
    baseline map there. At most one of patch and scene: they would read different blocks. With neither,
    the channel-deviation heatmap stays."""

    patch: PatchExplainer | None
    atlas: NeuronAtlas
    head_sha256: str
    score_terms: tuple[str, ...] = ("residual",)
    scene: SceneMapSettings | None = None

    def __post_init__(self) -> None:
        if self.patch is not None and self.scene is not None:
            raise InputError("an explanation artifact carries the patch map or the scene map, not both")

    @property
    def descriptor_blocks(self) -> tuple[int, ...]:
        """The blocks whose outputs the engine must keep for the live map (none: the deviation heatmap)."""
        if self.patch is not None:
            return self.patch.blocks
        return self.scene.blocks if self.scene is not None else ()

    def save(self, path: str | os.PathLike) -> None:
        arrays = {**(self.patch.arrays() if self.patch else {}), **self.atlas.to_arrays()}
        meta = {"kind": ARTIFACT_KIND, "patch": self.patch.metadata() if self.patch else None,
                "scene": self.scene.metadata() if self.scene else None, "head_sha256": self.head_sha256,
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
        try:
            scene = SceneMapSettings.from_metadata(meta["scene"]) if meta.get("scene") else None
            return cls(patch, atlas, meta["head_sha256"], tuple(meta.get("score_terms", ())), scene)
        except InputError as exc:
            raise ArtifactError(f"{path}: {exc}") from exc


def refine_batch(assets: ExplanationAssets, scored, images: np.ndarray | None, relevance: np.ndarray,
                 features: np.ndarray, descriptors, detector: NeroDetector, top_n: int, *,
                 rgb: np.ndarray | None = None, feature_map: np.ndarray | None = None, budget: MapBudget | None = None):
    """A `ScoredBatch` with the validated explanation, when descriptors are given and the batch has heatmaps
    on: the patch map as its heatmaps, or the scene map on the rows that are over the threshold (the frames
    that alert: its post-step costs too much for every frame, benchmarks/explanation_cost.py; the other
    rows keep the deviation heatmap, resized to the scene map's grid) and `map_drawn` saying which. With a
    `budget` (the live path: explanations/pacing.py) only the alerting rows it can pay for are drawn; the
    others are `map_skipped`.
    And, for a detector that scores the relevance residual, the neurons that drive that score (signed: +
    fires more / − less than on ID frames) as its top neurons. Frames: `images` (B, 3, H, W) normalised
    or `rgb` (B, H, W, 3) uint8; the scene map also needs the last `feature_map` (B, D, h, w)."""
    changes = {}
    if assets.patch is not None and descriptors is not None and scored.heatmaps is not None:
        images = images if images is not None else normalize_uint8(rgb)
        changes["heatmaps"] = assets.patch.heatmaps(assets.patch.maps_from_descriptors(_host(descriptors), images))
    if assets.scene is not None and descriptors is not None and feature_map is not None and scored.heatmaps is not None:
        drawn = np.zeros(len(scored), dtype=bool)
        alerting = np.flatnonzero(scored.over_threshold)
        rows = budget.choose(alerting) if budget is not None else alerting
        if len(rows):
            rgb = rgb if rgb is not None else denormalize(images)
            with budget.maps(len(rows)) if budget is not None else contextlib.nullcontext():
                maps = scene_maps(assets.scene, _host(descriptors[rows]), rgb[rows], _host(feature_map[rows]),
                                  detector)
                heat = np.stack([cv2.resize(np.asarray(h, np.float32), maps.shape[:0:-1],
                                            interpolation=cv2.INTER_LINEAR) for h in scored.heatmaps])
                heat[rows] = maps
            changes["heatmaps"] = heat
            drawn[rows] = True
        changes["map_drawn"] = drawn
        changes["map_skipped"] = np.asarray(scored.over_threshold, bool) & ~drawn
    if detector.config.use_residual and top_n > 0:
        arrays = detector.fitted_arrays()
        top, signed = assets.atlas.signed_drivers(relevance, features, arrays["pca_mean"], arrays["pca_components"], top_n)
        changes.update(top_neurons=top, deviations=signed)
    return dataclasses.replace(scored, **changes) if changes else scored


def _host(array) -> np.ndarray:
    """A host NumPy array of a NumPy array or a torch tensor on any device (the engine's outputs may sit on
    the GPU: only the rows a map needs are copied)."""
    return array.cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def map_kind(assets: ExplanationAssets | None, alerting: bool) -> str:
    """Which map `refine_batch` put on a frame, in words (for records and figures)."""
    if assets is not None and assets.patch is not None:
        return "patch map"
    if assets is not None and assets.scene is not None and alerting:
        return SCENE_MAP_NAME
    return "channel-deviation heatmap"


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
                     settings: PatchMapSettings | None = PatchMapSettings(),
                     scene: SceneMapSettings | None = None) -> ExplanationAssets:
    """From ID frames, (N, 3, 224, 224) float32 normalised: the atlas and (unless settings is None) the
    patch memory from the training frames, the patch map's offset from the held-out ones; `scene`, the scene
    map's settings, needs nothing fitted and is stored as given."""
    patch = PatchExplainer.fit(model, train_images, held_out_images, settings) if settings is not None else None
    maps = []
    with torch.inference_mode():
        for start in range(0, len(train_images), 32):
            _, feature_map, _ = forward_with_blocks(model, torch.from_numpy(train_images[start:start + 32]), ())
            maps.append(feature_map.numpy())
    atlas = NeuronAtlas.fit(np.concatenate(maps), denormalize(train_images))
    weight, bias = model.head_arrays()
    return ExplanationAssets(patch, atlas, artifact.head_sha256(weight, bias), score_terms(detector), scene)


REPO = Path(__file__).resolve().parents[2]  # the checkout: the split and the measured maps live there
DEFAULT_SPLIT = REPO / "configs" / "splits" / "hyperkvasir-lgi.json"
PATCH_FAMILY = "patch map"
SCENE_FAMILY = "distinctiveness x score decomposition x edge weight"  # its family in explanation_run's maps.json
SCENE_MAP_NAME = f"scene map ({SCENE_FAMILY})"
# the maps a new one must beat (evaluation/explanation_run.baseline_families)
BASELINE_FAMILIES = ("deviation heatmap", "Grad-CAM", "score decomposition (relevance", "centre prior")
MEASURES = ("pointing_game", "mass_lift", "auroc_inside")


def _beats(mine: dict, others: list[dict]) -> bool:
    """Whether family `mine` beats every family in `others` on all three measures, report part, every set."""
    for other in others:
        for set_name, parts in mine["measures"].items():
            theirs = other["measures"][set_name]["report"]
            if any(parts["report"][m] <= theirs[m] for m in MEASURES):
                return False
    return True


def validated_scene_settings(measured: dict) -> SceneMapSettings | None:
    """The scene map's chosen settings when, on the report part of every masked set, it beats every baseline
    map on all three measures (explanation_run's maps.json) and reads the engine's own blocks at its input
    size (live-feasible); else None."""
    families = measured["results"]
    scene = next((r for r in families if r["family"].startswith(SCENE_FAMILY)), None)
    baselines = [r for r in families if r["family"].startswith(BASELINE_FAMILIES)]
    if scene is None or len(baselines) != len(BASELINE_FAMILIES) or not _beats(scene, baselines):
        return None
    chosen = scene["chosen"]
    weights, side, layer = chosen["source"].split(":")
    if weights != "bundled" or int(side) != 224 or not chosen.get("with_score"):
        return None
    return SceneMapSettings(layer=layer, dark=int(chosen["dark"]), sigma=float(chosen["sigma"]),
                            power=float(chosen["power"]), edge_tau=float(chosen["edge_tau"]))


def validated_patch_settings(measured: dict) -> PatchMapSettings | None:
    """The patch map's chosen settings when, on the report part of every masked set, it beats every other
    map on all three measures (explanation_run's maps.json); else None (the live heatmap stays)."""
    families = measured["results"]
    patch = next((r for r in families if r["family"].startswith(PATCH_FAMILY)), None)
    if patch is None or not _beats(patch, [r for r in families if r is not patch]):
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
    parser.add_argument("--split", type=Path, default=DEFAULT_SPLIT)
    parser.add_argument("--patch-map", choices=("auto", "off"), default="auto",
                        help="auto: include the patch map, with the settings chosen there, only when --measured says it "
                             "beats every baseline map on all three measures in every masked set (report part)")
    parser.add_argument("--scene-map", choices=("auto", "off"), default="auto",
                        help="auto: include the scene map (explanations/distinct.py), with the settings chosen there, when "
                             "--measured says it beats every baseline map on all three measures in every masked set and no "
                             "patch map is included")
    parser.add_argument("--measured", type=Path, default=REPO / "docs" / "results" / "explanations" / "maps.json",
                        help="explanation_run's maps.json")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, _ = load_classifier(args.model)
    detector = NeroDetector.load(args.detector, *model.head_arrays())
    split = load_split(args.split)
    frames = {s: normalize_uint8(np.stack([to_model_rgb(read_image(p)) for p in split.paths(s)])) for s in ("train", "val")}
    measured = json.loads(args.measured.read_text())
    settings = validated_patch_settings(measured) if args.patch_map == "auto" else None
    scene = validated_scene_settings(measured) if (args.scene_map == "auto" and settings is None) else None
    fit_explanations(model, detector, frames["train"], frames["val"], settings, scene).save(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB): patch map {settings or 'not included'}; "
          f"scene map {scene or 'not included'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
