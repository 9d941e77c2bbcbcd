"""MJPEG over HTTP, so that any browser on the network shows the live overlay.

    GET /             a page with the live image (reconnects by itself if the monitor restarts)
    GET /stream.mjpg  multipart/x-mixed-replace JPEG stream
    GET /snapshot.jpg the newest frame
    GET /healthz      200 once a frame has been rendered

Each client gets the newest frame when it is ready for one — a slow client skips frames instead of
queueing them (the live path never serves stale frames). Frames are encoded once, not once per client.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from ..observability.http_handler import HttpSecurity, QuietHandler, SecureHTTPServer

__all__ = ["MjpegServer"]

_BOUNDARY = "smframe"
_RESEND_S = 2.0  # seconds without a new frame before the last one is sent again
_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>stream-monitor overlay</title>
<style>body{{margin:0;background:#111;color:#aaa;font:14px sans-serif}}img{{display:block;max-width:100%}}
p{{margin:6px 10px}}</style></head>
<body><img id="live" src="stream.mjpg" alt="live overlay">
<p>stream-monitor {title} &middot; <a href="snapshot.jpg" style="color:#8af">snapshot</a></p>
<script>
const img = document.getElementById("live");
img.onerror = () => setTimeout(() => {{ img.src = "stream.mjpg?" + Date.now(); }}, 1000);
</script></body></html>
"""


class _Server(SecureHTTPServer):
    owner: "MjpegServer"


class _Handler(QuietHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", _PAGE.format(title=owner.title).encode())
        elif path == "/snapshot.jpg":
            jpeg, _ = owner.latest()
            if jpeg is None:
                self._send(503, "text/plain", b"no frame yet\n")
            else:
                self._send(200, "image/jpeg", jpeg)
        elif path == "/stream.mjpg":
            self._stream(owner)
        elif path == "/healthz":
            ok = owner.latest()[0] is not None
            self._send(200 if ok else 503, "text/plain", b"ok\n" if ok else b"no frame yet\n")
        else:
            self._send(404, "text/plain", b"not found\n")

    def _stream(self, owner: "MjpegServer") -> None:
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        # Each part is followed at once by the next boundary: browsers show a part only when they see
        # the boundary that ends it, so a frame must not wait for the next frame to appear.
        seen = -1
        owner.clients_changed(+1)
        try:
            self.wfile.write(f"--{_BOUNDARY}\r\n".encode())
            while not owner.closed:
                jpeg, seen = owner.wait_newer(seen, timeout=_RESEND_S)
                if jpeg is None:  # nothing new: repeat the last frame, which also finds clients that left
                    jpeg, _ = owner.latest()
                if jpeg is None or owner.closed:
                    continue
                self.wfile.write(f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode())
                self.wfile.write(jpeg)
                self.wfile.write(f"\r\n--{_BOUNDARY}\r\n".encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        finally:
            owner.clients_changed(-1)


class MjpegServer:
    """Serves the newest published image on `host:port` (port 0 = any free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, quality: int = 80, title: str = "",
                 security: HttpSecurity | None = None) -> None:
        self.quality, self.title = quality, title
        self._server = _Server((host, port), _Handler)
        self._server.secure(security)  # TLS and basic auth (overlay.mjpeg_security); None = plain
        self.scheme = security.scheme if security is not None else "http"
        self._server.owner = self
        self.host, self.port = self._server.server_address[:2]
        self._condition = threading.Condition()
        self._jpeg: bytes | None = None
        self._count = 0
        self.clients = 0
        self.closed = False
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="mjpeg-http", daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/"

    def start(self) -> "MjpegServer":
        self._thread.start()
        return self

    def publish(self, image: np.ndarray) -> None:
        """Make (H, W, 3) BGR uint8 the newest frame."""
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return
        with self._condition:
            self._jpeg, self._count = jpeg.tobytes(), self._count + 1
            self._condition.notify_all()

    def latest(self) -> tuple[bytes | None, int]:
        with self._condition:
            return self._jpeg, self._count

    def wait_newer(self, seen: int, timeout: float) -> tuple[bytes | None, int]:
        """The newest frame once it is newer than `seen` (or (None, seen) after `timeout` s)."""
        with self._condition:
            self._condition.wait_for(lambda: self._count != seen or self.closed, timeout)
            if self._count == seen:
                return None, seen
            return self._jpeg, self._count

    def clients_changed(self, delta: int) -> None:
        with self._condition:
            self.clients += delta

    def stop(self) -> None:
        with self._condition:
            self.closed = True
            self._condition.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
