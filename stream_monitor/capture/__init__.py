"""Capture: one process per video source writing frames into a shared-memory ring.

`sources` opens cameras, files, RTSP, GStreamer pipelines and image folders behind one interface;
`ring` is the shared-memory ring (seqlock slots, counters in its header); `process` is the capture
process that ties them together with the scope-mask crop and the model-sized resize.
"""

from .ring import FrameRing, RingFrame, ring_name
from .sources import FrameSource, SourceError, open_source

__all__ = ["FrameRing", "FrameSource", "RingFrame", "SourceError", "open_source", "ring_name"]
