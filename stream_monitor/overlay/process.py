"""The overlay renderer as a process of a running monitor (`overlay:` in the config, or the demo)."""

from __future__ import annotations

import logging
from typing import Any

import cv2

from ..config import CurveConfig, OverlayConfig
from ..observability.http_handler import load_http_security
from ..service import ServiceProcess
from ..transport.security import client_from_config
from .sinks import MjpegSink, Mp4Sink, Sink, WindowSink
from .viewer import OverlayViewer

__all__ = ["OverlayProcess", "build_sinks"]

log = logging.getLogger(__name__)


def build_sinks(config: OverlayConfig, title: str = "") -> list[Sink]:
    """The sinks an overlay config asks for (window, MP4, MJPEG), opened."""
    sinks: list[Sink] = []
    try:
        if config.mp4 is not None:
            sinks.append(Mp4Sink(config.mp4, config.mp4_fps))
        if config.mjpeg_port is not None:
            security = load_http_security(config.mjpeg_security, "overlay.mjpeg_security", open_paths=("/healthz",))
            sink = MjpegSink(config.mjpeg_host, config.mjpeg_port, title, security)
            log.info("live overlay at %s", sink.url)
            sinks.append(sink)
        if config.window:
            sinks.append(WindowSink(f"stream-monitor {title}"))
    except Exception:
        for sink in sinks:
            sink.close()
        raise
    return sinks


class OverlayProcess(ServiceProcess):
    """Renders one stream until stopped. Exactly one of `frames_endpoint` / `ring` is given."""

    def __init__(self, config: OverlayConfig, stream: str, results_endpoint: str, frames_endpoint: str | None,
                 ring: str | None, stop_event: Any, log_queue: Any, log_level: str = "INFO",
                 curve: CurveConfig | None = None, explanations: str | None = None) -> None:
        super().__init__("overlay", stop_event, log_queue, log_level)
        self.curve = curve
        self.explanations = explanations  # the detector's explanation artifact (explanations/assets.py), if any
        self.config, self.stream = config, stream
        self.results_endpoint, self.frames_endpoint, self.ring = results_endpoint, frames_endpoint, ring

    def main(self) -> None:
        cv2.setNumThreads(1)  # drawing and encoding one overlay per result; leave the cores to the model
        client = client_from_config(self.curve)
        sinks = build_sinks(self.config, self.stream)
        explanation = None
        if self.explanations is not None:
            from ..explanations.assets import ExplanationAssets

            explanation = ExplanationAssets.load(self.explanations)
        try:
            viewer = OverlayViewer(self.results_endpoint, self.stream, sinks, self.frames_endpoint, self.ring,
                                   self.config.heatmap, curve=client, explanation=explanation)
        except BaseException:
            for sink in sinks:
                sink.close()
            raise
        try:
            stats = viewer.run(self.stop_event.is_set)
            log.info("overlay: %d results, %d rendered, %d lost in transport, %d frames skipped upstream",
                     stats.results, stats.rendered, stats.lost_results, stats.skipped_frames)
        finally:
            viewer.close()
