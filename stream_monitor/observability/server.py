"""One HTTP port for operations: /metrics (Prometheus text format), /healthz and /readyz.

/healthz answers "is the process working?": 200 while the inference loop has completed an iteration
recently (a hung loop turns it to 503, so that Kubernetes restarts the pod). /readyz answers "should
this monitor be trusted now?": 200 once the model is loaded and every live stream delivered a frame
within `stale_after_s`; replayed sources that ended are not a reason to be unready. Both return a small
JSON body that says why.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .http_handler import HttpSecurity, QuietHandler, SecureHTTPServer

__all__ = ["OpsServer"]

Check = Callable[[], tuple[bool, dict]]


class _Handler(QuietHandler):
    server: "_Server"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.server.registry))
        elif path in ("/healthz", "/readyz"):
            ok, detail = (self.server.health if path == "/healthz" else self.server.ready)()
            body = json.dumps({"status": "ok" if ok else "fail", **detail}).encode()
            self._send(200 if ok else 503, "application/json", body)
        elif path == "/":
            self._send(200, "text/plain; charset=utf-8", b"stream-monitor: /metrics /healthz /readyz\n")
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")


class _Server(SecureHTTPServer):
    registry: CollectorRegistry
    health: Check
    ready: Check


class OpsServer:
    """Serves the registry and the two checks on `host:port` (port 0 = any free port) in a thread."""

    def __init__(self, registry: CollectorRegistry, health: Check, ready: Check, host: str = "127.0.0.1",
                 port: int = 0, security: HttpSecurity | None = None) -> None:
        self._server = _Server((host, port), _Handler)
        self._server.secure(security)  # TLS and basic auth (metrics.security); None = plain
        self.scheme = security.scheme if security is not None else "http"
        self._server.registry, self._server.health, self._server.ready = registry, health, ready
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="ops-http", daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self) -> "OpsServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
