"""Video sources behind one small interface: open, read the next frame, close.

Live sources (camera, RTSP, GStreamer) deliver frames at their own rate; `read` blocks until the next one,
and the capture process reads continuously so that OpenCV's internal buffer never holds stale frames.
Replayed sources (a video file, a folder of images) have a `frame_interval` that the capture process
paces them at — their own frame rate, a given one, or none (as fast as possible).
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from pathlib import Path

import cv2
import numpy as np

from ..config import CameraSource, FileSource, FolderSource, GStreamerSource, RtspSource, SourceConfig
from ..data.images import list_images, read_image
from ..errors import InputError, StreamMonitorError

__all__ = ["FrameSource", "SourceError", "open_source", "opencv_has_gstreamer"]

_DEFAULT_FPS = 30.0  # used when a file does not say its rate (CAP_PROP_FPS = 0)
_MAX_DECODE_FAILURES = 25  # consecutive undecodable frames of a file before it counts as ended


class SourceError(StreamMonitorError):
    """A source cannot be opened or read; the message names it."""


class FrameSource(ABC):
    """A stream of (H, W, 3) BGR uint8 frames."""

    live: bool = False
    description: str = ""

    @property
    def frame_interval(self) -> float | None:
        """Seconds between frames when replayed; None = deliver as fast as possible (or live)."""
        return None

    @property
    def lossless(self) -> bool:
        """Wait for the consumer instead of letting the ring drop frames (replays only)."""
        return False

    @abstractmethod
    def read(self) -> np.ndarray | None:
        """The next frame, or None at the end of a replay / when a live source stopped delivering."""

    def skip(self) -> bool:
        """Move past the next frame as cheaply as the source allows (frame skipping); False where
        `read` would have returned None."""
        return self.read() is not None

    def rewind(self) -> bool:
        """Start a replay again from its first frame; False when the source cannot."""
        return False

    def close(self) -> None:
        """Release the device or file."""


class _OpenCvSource(FrameSource):
    """Anything `cv2.VideoCapture` opens."""

    def __init__(self, target: str | int, api: int, description: str, params: list[int] | None = None) -> None:
        self.description = description
        self._capture = cv2.VideoCapture(target, api, params or [])
        if not self._capture.isOpened():
            self._capture.release()
            raise SourceError(f"cannot open {description} with OpenCV")

    @property
    def native_fps(self) -> float:
        fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        return fps if 0 < fps < 1000 else _DEFAULT_FPS

    def read(self) -> np.ndarray | None:
        ok, frame = self._capture.read()
        return frame if ok and frame is not None and frame.size else None

    def skip(self) -> bool:
        # grab() decodes (inter frames need their predecessors) but skips the colour conversion.
        return bool(self._capture.grab())

    def close(self) -> None:
        self._capture.release()


class VideoFileSource(_OpenCvSource):
    live = False

    def __init__(self, config: FileSource, threads: int = 1) -> None:
        if not config.path.is_file():
            raise SourceError(f"video file {config.path} does not exist")
        self._params = _decode_threads(threads)
        super().__init__(str(config.path), cv2.CAP_FFMPEG, f"video file {config.path}", self._params)
        self.config = config

    @property
    def frame_interval(self) -> float | None:
        pace = self.config.pace
        if pace == "max":
            return None
        rate = self.native_fps if pace == "native" else float(pace)
        return 1.0 / (rate * self.config.speed)

    @property
    def lossless(self) -> bool:
        return self.config.lossless

    skipped = 0  # frames that failed to decode and were passed over (counted as read errors)

    def read(self) -> np.ndarray | None:
        # A frame the decoder rejects (a damaged MJPEG frame, a corrupt packet) reads as failure just
        # like the end of the file; reading on finds the frames after it. Only a run of failures is the
        # end, and failures are counted only once a good frame follows them.
        for failures in range(_MAX_DECODE_FAILURES + 1):
            frame = super().read()
            if frame is not None:
                self.skipped += failures
                return frame
        return None

    def skip(self) -> bool:
        for failures in range(_MAX_DECODE_FAILURES + 1):  # the same tolerance as `read`
            if super().skip():
                self.skipped += failures
                return True
        return False

    def rewind(self) -> bool:
        if not self.config.loop:
            return False
        if self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0):
            return True
        # Some containers cannot seek: open the file again instead of ending a looped replay.
        self._capture.release()
        self._capture = cv2.VideoCapture(str(self.config.path), cv2.CAP_FFMPEG, self._params)
        return self._capture.isOpened()


class CameraDeviceSource(_OpenCvSource):
    live = True

    def __init__(self, config: CameraSource) -> None:
        device = config.device
        if isinstance(device, str) and re.fullmatch(r"\d+", device):
            device = int(device)
        api = cv2.CAP_V4L2 if os.name == "posix" else cv2.CAP_ANY
        super().__init__(device, api, f"camera {device}")
        if config.fourcc:
            self._capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*config.fourcc))
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, config.width), (cv2.CAP_PROP_FRAME_HEIGHT, config.height),
                            (cv2.CAP_PROP_FPS, config.fps)):
            if value is not None:
                self._capture.set(prop, value)
        # Keep at most one frame in the driver's queue: we want the newest, not a backlog.
        self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)


class RtspStreamSource(_OpenCvSource):
    live = True

    def __init__(self, config: RtspSource, threads: int = 1) -> None:
        # FFmpeg reads its options from this variable when the capture is created.
        os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{config.transport}"
        super().__init__(config.url, cv2.CAP_FFMPEG, f"RTSP stream {_redact(config.url)}", _decode_threads(threads))
        self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)


def opencv_has_gstreamer() -> bool:
    """Whether this OpenCV build has the GStreamer video back-end."""
    match = re.search(r"GStreamer:\s*(\w+)", cv2.getBuildInformation())
    return bool(match and match.group(1).upper() == "YES")


class GStreamerPipelineSource(_OpenCvSource):
    live = True

    def __init__(self, config: GStreamerSource) -> None:
        if not opencv_has_gstreamer():
            raise SourceError("this OpenCV build has no GStreamer back-end (opencv-python-headless from PyPI "
                              "is built without it); install an OpenCV with GStreamer, e.g. Debian's "
                              "python3-opencv, or use a camera / rtsp source")
        super().__init__(config.pipeline, cv2.CAP_GSTREAMER, "GStreamer pipeline")


class ImageFolderSource(FrameSource):
    """Images of a folder in sorted order; unreadable files are skipped (and counted by the caller)."""

    live = False

    def __init__(self, config: FolderSource) -> None:
        try:
            self.files = list_images(config.path, recursive=config.recursive)
        except InputError as exc:
            raise SourceError(str(exc)) from exc
        if not self.files:
            raise SourceError(f"image folder {config.path} holds no images")
        self.config = config
        self.description = f"image folder {config.path} ({len(self.files)} images)"
        self._next = 0
        self.skipped = 0

    @property
    def frame_interval(self) -> float | None:
        return 1.0 / self.config.fps

    @property
    def lossless(self) -> bool:
        return self.config.lossless

    def read(self) -> np.ndarray | None:
        while self._next < len(self.files):
            path = self.files[self._next]
            self._next += 1
            try:
                return read_image(path)
            except InputError:
                self.skipped += 1
        return None

    def skip(self) -> bool:
        # An image needs no predecessor to decode: skipping one is free.
        if self._next >= len(self.files):
            return False
        self._next += 1
        return True

    def rewind(self) -> bool:
        if not self.config.loop:
            return False
        self._next = 0
        return True


def _decode_threads(threads: int) -> list[int]:
    """FFmpeg decoder threads. OpenCV's default is one per core, which on a small machine takes the
    cores the model needs; an endoscopy stream decodes in a few milliseconds on one thread."""
    return [cv2.CAP_PROP_N_THREADS, threads] if hasattr(cv2, "CAP_PROP_N_THREADS") else []


def _redact(url: str) -> str:
    """An RTSP URL without its password, for logs."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)


def open_source(config: SourceConfig, threads: int = 1) -> FrameSource:
    """Open the source a stream's config names; `threads` = FFmpeg decoder threads (files, RTSP).

    Raises:
        SourceError: it does not exist, cannot be opened, or needs a back-end this OpenCV lacks.
    """
    if isinstance(config, FileSource):
        return VideoFileSource(config, threads)
    if isinstance(config, FolderSource):
        return ImageFolderSource(config)
    if isinstance(config, CameraSource):
        return CameraDeviceSource(config)
    if isinstance(config, RtspSource):
        return RtspStreamSource(config, threads)
    if isinstance(config, GStreamerSource):
        return GStreamerPipelineSource(config)
    raise SourceError(f"unknown source kind {getattr(config, 'kind', config)!r}")


def describe(config: SourceConfig) -> str:
    """One line naming a source without secrets (for logs and the demo summary)."""
    if isinstance(config, (FileSource, FolderSource)):
        return f"{config.kind} {Path(config.path)}"
    if isinstance(config, RtspSource):
        return f"rtsp {_redact(config.url)}"
    if isinstance(config, CameraSource):
        return f"camera {config.device}"
    return "gstreamer pipeline"
