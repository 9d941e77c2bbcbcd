"""The small HTTP handler base that /metrics (observability/server.py) and the MJPEG page
(overlay/mjpeg.py) share: whole-body replies that are never cached, and no access log."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

__all__ = ["QuietHandler"]


class QuietHandler(BaseHTTPRequestHandler):
    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # a scrape every 15 s or a browser polling frames would flood the log
