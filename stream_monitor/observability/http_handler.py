"""The small HTTP handler base that /metrics (observability/server.py) and the MJPEG page
(overlay/mjpeg.py) share: whole-body replies that are never cached, no access log, and — when
configured (`metrics.security`, `overlay.mjpeg_security`) — TLS and HTTP basic auth.

TLS wraps the listening socket; the handshake runs in the connection's own thread (a slow or plain-HTTP
client must not hold up the accept loop), and a failed handshake is dropped without a traceback. Basic
auth is checked before any handler runs; paths in `open_paths` (/healthz, /readyz: Kubernetes probes
carry no credentials and learn nothing clinical there) stay open.
"""

from __future__ import annotations

import base64
import hmac
import ssl
import stat
import sys
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..errors import StreamMonitorError

__all__ = ["HttpSecurity", "HttpSecurityError", "QuietHandler", "SecureHTTPServer", "load_http_security"]

_HANDSHAKE_TIMEOUT_S = 10.0


class HttpSecurityError(StreamMonitorError):
    """A TLS certificate / key or a password file is missing, unreadable, too open, or invalid."""


@dataclass(frozen=True)
class HttpSecurity:
    """What a server enforces: TLS (an SSL context) and/or basic auth (the expected header value)."""

    ssl_context: ssl.SSLContext | None = None
    authorization: bytes | None = None
    open_paths: tuple[str, ...] = ()

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"


def _private_file(path: Path, field: str) -> Path:
    if not path.is_file():
        raise HttpSecurityError(f"{field}: {path} does not exist")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o037:  # group read allowed (a Kubernetes Secret with fsGroup is 0440)
        raise HttpSecurityError(f"{field}: {path} can be read or changed by other users (mode {mode:04o}); "
                                f"chmod 600 {path}")
    return path


def load_http_security(config: object | None, section: str, open_paths: tuple[str, ...] = ()) -> HttpSecurity | None:
    """An `HttpSecurity` from a config section (config.HttpSecurityConfig: cert_file, key_file, username,
    password_file); None when the section is absent (plain HTTP, no auth)."""
    if config is None:
        return None
    context = None
    if config.cert_file is not None:
        key = _private_file(Path(config.key_file), f"{section}.key_file")
        if not Path(config.cert_file).is_file():
            raise HttpSecurityError(f"{section}.cert_file: {config.cert_file} does not exist")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(config.cert_file, key)
        except (ssl.SSLError, OSError) as exc:
            raise HttpSecurityError(f"{section}: cannot use {config.cert_file} with {key}: {exc}") from exc
    authorization = None
    if config.username is not None:
        password_file = _private_file(Path(config.password_file), f"{section}.password_file")
        password = password_file.read_text().rstrip("\r\n")
        if not password:
            raise HttpSecurityError(f"{section}.password_file: {password_file} is empty")
        token = base64.b64encode(f"{config.username}:{password}".encode()).decode()
        authorization = f"Basic {token}".encode()
    return HttpSecurity(context, authorization, open_paths)


class SecureHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that can serve TLS and require basic auth (`secure`)."""

    daemon_threads = True
    allow_reuse_address = True
    security: HttpSecurity | None = None

    def secure(self, security: HttpSecurity | None) -> None:
        """Apply `security` (before serving); None leaves the server plain and open."""
        self.security = security
        if security is not None and security.ssl_context is not None:
            self.socket = security.ssl_context.wrap_socket(self.socket, server_side=True,
                                                           do_handshake_on_connect=False)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that is not speaking TLS, or hangs up mid-handshake, is not a server error.
        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class QuietHandler(BaseHTTPRequestHandler):
    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(_HANDSHAKE_TIMEOUT_S)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        security = getattr(self.server, "security", None)
        if security is None or security.authorization is None or self.path.split("?", 1)[0] in security.open_paths:
            return True
        given = self.headers.get("Authorization", "").encode()
        if hmac.compare_digest(given, security.authorization):
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="stream-monitor", charset="UTF-8"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # a scrape every 15 s or a browser polling frames would flood the log
