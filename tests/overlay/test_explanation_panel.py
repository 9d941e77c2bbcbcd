"""The overlay's explanation panel (overlay/explanation_panel.py via render.py): with an explanation
artifact the named neurons are drawn as their training-patch thumbnails, "more of" / "less of"."""

from __future__ import annotations

import numpy as np

from stream_monitor.explanations.assets import ExplanationAssets
from stream_monitor.explanations.neurons import NeuronAtlas
from stream_monitor.explanations.patch import PatchExplainer
from stream_monitor.overlay.explanation_panel import THUMB_ROW, score_terms_line
from stream_monitor.overlay.render import PANEL_WIDTH, parts_line, render_overlay
from stream_monitor.site.patch_memory import PatchMemory
from stream_monitor.transport.messages import result_message


def _assets() -> ExplanationAssets:
    """Neuron d's thumbnails are a flat colour: green for neuron 0, blue for neuron 1 (BGR)."""
    maps = np.zeros((2, 2, 7, 7), np.float32)
    maps[0, 0, 3, 3] = maps[1, 1, 3, 3] = 1.0
    rgb = np.zeros((2, 224, 224, 3), np.uint8)
    rgb[0, ..., 1] = 220  # image 0 green (RGB)
    rgb[1, ..., 2] = 220  # image 1 blue
    atlas = NeuronAtlas.fit(maps, rgb, per_neuron=1, thumb=28)
    return ExplanationAssets(PatchExplainer("blocks.3", PatchMemory(np.ones((2, 4), np.float32)), 1.0, 1.0),
                             atlas, "x", ("residual",))


def _message() -> dict:
    return result_message(
        stream="endo", seq=1, prev_seq=0, t_capture=1.0, t_result=1.0, latency_s=0.01, batch_size=1,
        probs=np.array([0.8, 0.1, 0.1]), class_names=["a", "b", "c"], score=2.0, smoothed_score=2.0, threshold=1.0,
        distance=0.0, bias_term=0.0, rho=1.0, alert={"active": True, "id": 1, "since": 0.5, "over": 12, "window": 20},
        top_neurons=np.array([0, 1]), deviations=np.array([0.3, -0.1]), heatmap=None, frame_size=(320, 240),
        box=(0, 240, 0, 320))


def test_panel_shows_each_named_neuron_as_its_thumbnails():
    frame = np.full((240, 320, 3), 90, np.uint8)
    image = render_overlay(frame, _message(), explanation=_assets())
    panel = image[:, -PANEL_WIDTH:]
    def green_row(y: int) -> bool:
        b, g, r = panel[y, 18:36].mean(axis=0)
        return g > 150 and b < 100 and r < 100

    rows = [y for y in range(panel.shape[0]) if green_row(y)]
    assert rows, "neuron 0's green thumbnail is not in the panel"
    first = rows[0]
    green = panel[first + 2:first + 20, 18:36].reshape(-1, 3).mean(axis=0)
    blue = panel[first + THUMB_ROW + 2:first + THUMB_ROW + 20, 18:36].reshape(-1, 3).mean(axis=0)
    assert green[1] > 150 and green[0] < 80  # neuron 0, then neuron 1 one row below
    assert blue[0] > 150 and blue[1] < 80
    plain = render_overlay(frame, _message())[:, -PANEL_WIDTH:]
    assert plain[first:first + 20, 18:36, 1].mean() < 120  # without the artifact: the old text list


def test_parts_line_names_only_what_the_score_is_made_of():
    parts = {"distance": 1.0, "bias_term": 2.0, "rho": 0.5}
    assert "residual" in score_terms_line(parts, ("residual",)) and "distance" not in score_terms_line(parts, ("residual",))
    assert score_terms_line(parts, ("distance", "bias", "rho")).startswith("distance 1")


def test_a_served_detectors_score_shows_its_own_parts_not_neros():
    """With a served fusion the gauge is the fusion's score: the line under it names the fused components
    (their standardised scores), never NERO's distance / bias / rho, which the alert does not use."""
    message = {**_message(), "evidence": {"fired": ["fusion z(neco)+z(bstats)"], "detector": "fusion z(neco)+z(bstats)",
                                          "detector_score": 2.5, "components": {"neco": 0.41, "bstats": 2.09},
                                          "nero_score": 0.9, "site_score": None, "p_site": None, "p_nero": None}}
    line = parts_line(message, _assets())
    assert line == "score = features +0.41  colour/texture +2.1"  # in words, not the registry's names
    assert "distance" not in line and "residual" not in line
    single = {**message, "evidence": {**message["evidence"], "detector": "neco", "components": {}}}
    assert parts_line(single) == "score = neco"
    assert parts_line(_message()).startswith("distance 0")  # NERO's own score: its parts
    assert render_overlay(np.full((240, 320, 3), 90, np.uint8), message).shape[1] == 320 * 480 // 240 + PANEL_WIDTH


def test_every_fusion_component_has_words():
    """A component added to the fusions must get its words too, or the overlay would show a registry name."""
    from stream_monitor.baselines.fusion import _part_factories
    from stream_monitor.overlay.explanation_panel import COMPONENT_WORDS

    assert set(_part_factories()) <= set(COMPONENT_WORDS)
