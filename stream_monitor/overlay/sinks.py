"""Where rendered overlays go: an OpenCV window, an MP4 file, the MJPEG server.

Every sink takes `write(image, t_capture)` with a (H, W, 3) BGR uint8 image and the unix capture time
of the frame it shows, and `close()`.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..errors import StreamMonitorError
from .mjpeg import MjpegServer

if TYPE_CHECKING:  # annotation only: the overlay imports the HTTP handler lazily, through MjpegServer
    from ..observability.http_handler import HttpSecurity

__all__ = ["MjpegSink", "Mp4Sink", "Sink", "SinkError", "WindowSink", "opencv_has_gui"]

log = logging.getLogger(__name__)


class SinkError(StreamMonitorError):
    """A sink cannot be opened (no display, unwritable file, port taken)."""


def opencv_has_gui() -> bool:
    """Whether this OpenCV can open windows (opencv-python-headless cannot)."""
    match = re.search(r"GUI:\s*(\S+)", cv2.getBuildInformation())
    return bool(match and match.group(1).upper() not in ("NONE", "NO"))


class Sink(ABC):
    wants_stop = False  # a window's user pressed q / Esc

    @abstractmethod
    def write(self, image: np.ndarray, t_capture: float) -> None:
        """Show, store or serve one rendered overlay image."""

    def close(self) -> None:
        pass


class WindowSink(Sink):
    """An OpenCV window; q or Esc asks the viewer to stop."""

    def __init__(self, title: str = "stream-monitor") -> None:
        self.title = title
        if not opencv_has_gui():
            raise SinkError("cannot open a window: this OpenCV has no GUI (opencv-python-headless); install "
                            "opencv-python and run on a desktop, or use --serve / --mp4")
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise SinkError("cannot open a window: this OpenCV has no GUI (opencv-python-headless) or there is "
                            "no display; install opencv-python and run on a desktop, or use --serve / --mp4") from exc

    def write(self, image: np.ndarray, t_capture: float) -> None:
        cv2.imshow(self.title, image)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.wants_stop = True

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass


class Mp4Sink(Sink):
    """An MP4 file at a fixed frame rate that keeps real time.

    Results arrive at whatever rate the monitor scores (fewer than the source's frames when it drops), so
    each image is held until the next one's capture time: the file plays at the speed things happened.
    An image that falls on an already written frame is skipped; a stall longer than `max_hold_s` is cut
    short.
    """

    def __init__(self, path: str | Path, fps: float = 15.0, max_hold_s: float = 2.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps, self.max_hold = fps, max(1, int(max_hold_s * fps))
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._t0: float | None = None
        self._last: np.ndarray | None = None
        self.frames_written = 0
        self.images = 0

    def write(self, image: np.ndarray, t_capture: float) -> None:
        size = (image.shape[1], image.shape[0])
        if self._writer is None:
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)
            if not self._writer.isOpened():
                raise SinkError(f"cannot write MP4 {self.path} with OpenCV")
            self._size, self._t0 = size, t_capture
        if size != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        tick = int(round((t_capture - self._t0) * self.fps))  # the file frame this image belongs to
        if tick < self.frames_written:  # that frame is written already (results faster than the file)
            return
        # Hold the previous image until this one's time, then show this one.
        hold = min(tick - self.frames_written, self.max_hold) if self._last is not None else 0
        for _ in range(hold):
            self._writer.write(self._last)
        self._writer.write(image)
        self.frames_written += hold + 1
        if tick + 1 > self.frames_written:  # a stall longer than max_hold was cut short: restart the clock
            self._t0 += (tick + 1 - self.frames_written) / self.fps
        self._last = image
        self.images += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            log.info("wrote %s: %d frames at %.0f fps from %d overlays", self.path, self.frames_written, self.fps,
                     self.images)


class MjpegSink(Sink):
    """Publishes to an `MjpegServer` (started here, stopped on close)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, title: str = "",
                 security: HttpSecurity | None = None) -> None:
        try:
            self.server = MjpegServer(host, port, title=title, security=security).start()
        except OSError as exc:
            raise SinkError(f"cannot serve MJPEG on {host}:{port}: {exc.strerror}") from exc

    @property
    def url(self) -> str:
        return self.server.url

    def write(self, image: np.ndarray, t_capture: float) -> None:
        self.server.publish(image)

    def close(self) -> None:
        self.server.stop()
