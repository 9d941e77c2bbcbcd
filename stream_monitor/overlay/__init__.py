"""The overlay: results drawn onto their frames (banner, score gauge, class, neurons, heatmap), sent to
an OpenCV window, an MP4 file, or MJPEG over HTTP for browsers."""

from .render import ViewerStatus, render_overlay
from .sinks import MjpegSink, Mp4Sink, SinkError, WindowSink
from .viewer import OverlayViewer, ViewerStats

__all__ = ["MjpegSink", "Mp4Sink", "OverlayViewer", "SinkError", "ViewerStats", "ViewerStatus", "WindowSink",
           "render_overlay"]
