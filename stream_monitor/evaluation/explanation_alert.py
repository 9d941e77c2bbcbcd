"""Map families for explanation_run from the *served alert's* own score: the shipped fusion
`z(neco)+z(bstats)` raises the alert, and its block-statistics component splits exactly over block 5's
locations (explanations.maps.block_stats_decomposition). NECO, the other component, is a ratio of norms of
the pooled feature and has no exact spatial split, so these maps explain the statistics' share of the alert.

Families (settings chosen on the select part, as every other family):
- the decomposition alone, 7 × 7 as computed;
- the decomposition on the scene cells (lit scope region, overlays and dark lumen out; explanations/distinct.py);
- intra-image distinctiveness × the decomposition (the round-3 best product, with the alert's decomposition
  in place of NERO's residual one).

Block 5 comes out of the engine's own forward pass (models/block_stats.py), so all three are live-feasible.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from ..baselines.serving import AlertDetector
from ..errors import InputError
from ..explanations.distinct import combine, scene_cells
from ..explanations.maps import block_stats_decomposition
from ..models.block_stats import STATS_BLOCK, forward_with_blocks
from .explanation_data import Frame, MapFamily

__all__ = ["alert_families"]

DARKS = (0, 50, 70, 90)
POWERS = (1.0, 4.0)
SIGMAS = (0.0, 1.0)


def _block_outputs(model, frames: list[Frame], batch: int = 16) -> np.ndarray:
    """(N, C, 7, 7) float32 block-5 outputs of every frame's model input (one forward per frame, no cache:
    a few seconds for the masked sets)."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(frames), batch):
            images = torch.from_numpy(np.stack([f.image for f in frames[start:start + batch]]))
            out.append(forward_with_blocks(model, images, (STATS_BLOCK,))[2][0].numpy())
    return np.concatenate(out)


def alert_families(model, alert: AlertDetector, frames: list[Frame],
                   distinctiveness: dict[str, np.ndarray]) -> list[MapFamily]:
    """The alert-decomposition families; `distinctiveness` maps a live source name ("bundled:224:blocks.2")
    to its (N, h, w) maps in `frames` order (explanation_distinct computes and caches them)."""
    names = getattr(alert.detector, "names", [])
    if "bstats" not in names:
        raise InputError(f"the served alert {alert.name!r} has no block-statistics component to decompose")
    stats = alert.detector.detectors_[names.index("bstats")]
    blocks = _block_outputs(model, frames)
    index = {(f.set_name, f.name): i for i, f in enumerate(frames)}
    parts: dict[int, np.ndarray] = {}
    scenes: dict[tuple[int, int, int], np.ndarray] = {}

    def decomposition(frame: Frame) -> np.ndarray:
        i = index[(frame.set_name, frame.name)]
        if i not in parts:
            parts[i] = block_stats_decomposition(blocks[i], stats)
        return parts[i]

    def scene(frame: Frame, dark: int, side: int) -> np.ndarray:
        key = (index[(frame.set_name, frame.name)], dark, side)
        if key not in scenes:
            scenes[key] = scene_cells(frame.rgb[None], side, side, dark)[0]
        return scenes[key]

    def on_scene(frame: Frame, dark: int, power: float) -> np.ndarray:
        return combine(None, scene(frame, dark, 28), 0.0, power, decomposition(frame))

    def with_distinct(frame: Frame, source: str, dark: int, sigma: float, power: float) -> np.ndarray:
        dist = distinctiveness[source][index[(frame.set_name, frame.name)]]
        return combine(dist, scene(frame, dark, dist.shape[0]), sigma, power, decomposition(frame))

    return [
        MapFamily("alert decomposition (block statistics over 7x7 locations)", decomposition),
        MapFamily("alert decomposition on scene cells", on_scene,
                  tuple({"dark": d, "power": p} for d, p in itertools.product(DARKS, POWERS))),
        MapFamily("distinctiveness x alert decomposition (engine's blocks, scene cells)", with_distinct,
                  tuple({"source": s, "dark": d, "sigma": sg, "power": p}
                        for s, d, sg, p in itertools.product(sorted(distinctiveness), DARKS, SIGMAS, POWERS))),
    ]


def main(argv: list[str] | None = None) -> int:
    """Measure the alert-decomposition families beside the baseline maps (select part chooses, report part
    reports) and write maps.json / README.md to --out, as explanation_run does for every other family."""
    from pathlib import Path

    from .. import bundled
    from ..baselines.serving import load_alert_detector
    from .explanation_distinct import LIVE_SOURCES, _source_maps
    from .explanation_run import _table, baseline_families, bundled_run, select_and_report, write_report

    args, model, detector, frames = bundled_run(__doc__, argv)
    alert = load_alert_detector(bundled.DETECTOR)
    cache = Path(".cache") / "explanations"
    distinct = {":".join(map(str, s)): _source_maps(s, model, frames, args.data_root, cache) for s in LIVE_SOURCES}
    results = [select_and_report(frames, family) for family in
               baseline_families(detector) + alert_families(model, alert, frames, distinct)]
    write_report(args.out, results, frames, "python -m stream_monitor.evaluation.explanation_alert --out " + str(args.out))
    print(_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
