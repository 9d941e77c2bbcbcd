"""ZeroMQ CURVE for the result and frame sockets: encrypted, and only for clients whose key is allowed.

The results carry alerts and the frames carry patient video, so a monitor whose sockets are reachable
from other hosts must not serve them to whoever connects. With `transport.curve` configured:

    monitor (server)   its key pair (`server_secret_key`) on both XPUB sockets; a ZAP handler
                       (zmq.auth's ThreadAuthenticator) admits only the public keys in `authorized_keys`
    viewer (client)    its own key pair (`client_secret_key`) and the monitor's public key
                       (`server_public_key`); it waits for the CURVE handshake and raises
                       `TransportSecurityError` saying why when there is none

CURVE itself never reports a wrong key to the application: the connection just carries nothing. So
clients watch their socket's monitor events: HANDSHAKE_FAILED_AUTH means "this key is not authorized",
any other failure or no handshake within the timeout means "wrong server key, or no monitor there".
Key files use zmq.auth's certificate format (`stream-monitor keys` writes them, mode 0600); a secret
key file that other users can read (or its group change) is refused. Without `transport.curve` the sockets stay plain (the
default binds to loopback, where only this host's users can connect).
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from ..errors import StreamMonitorError

__all__ = ["CurveClient", "CurveServer", "ServerAuthenticator", "TransportSecurityError", "await_handshake",
           "load_public_key", "load_secret_key", "secure_client", "secure_server", "write_keypair"]

HANDSHAKE_TIMEOUT_S = 10.0
_FAILED = {zmq.EVENT_HANDSHAKE_FAILED_AUTH: "auth", zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol",
           zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "no_detail"}


class TransportSecurityError(StreamMonitorError):
    """A CURVE key is missing, unreadable, too open, or the handshake with the monitor failed."""


@dataclass(frozen=True)
class CurveServer:
    """The monitor's side: its key pair and the folder of client public keys it admits."""

    public: bytes
    secret: bytes
    authorized: Path


@dataclass(frozen=True)
class CurveClient:
    """A subscriber's side: its key pair and the monitor's public key."""

    public: bytes
    secret: bytes
    server_public: bytes


def _require_curve() -> None:
    if not zmq.has("curve"):
        raise TransportSecurityError("this pyzmq / libzmq has no CURVE support (zmq.has('curve') is False); "
                                     "install the pyzmq wheel, which ships libsodium")


def write_keypair(folder: str | Path, name: str) -> tuple[Path, Path]:
    """Write a new key pair as `<name>.key` (public) and `<name>.key_secret` (both keys), mode 0600,
    in zmq.auth's certificate format; refuses to overwrite. Returns (public file, secret file)."""
    _require_curve()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.curve_keypair()
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    paths = folder / f"{name}.key", folder / f"{name}.key_secret"
    for path in paths:
        if path.exists():
            raise TransportSecurityError(f"{path} exists; remove it or choose another --name (keys are never overwritten)")
    for path, with_secret in zip(paths, (False, True)):
        lines = [f"#   CURVE {'secret key pair' if with_secret else 'public key'} made by stream-monitor keys, {stamp}",
                 "#   " + ("keep this file private (mode 0600)" if with_secret else "give this file to the other side"),
                 "", "metadata", "curve", f'    public-key = "{public.decode()}"']
        if with_secret:
            lines.append(f'    secret-key = "{secret.decode()}"')
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        os.chmod(path, 0o600)  # whatever the umask
    return paths


def load_secret_key(path: str | Path, field: str) -> tuple[bytes, bytes]:
    """(public, secret) from a `.key_secret` file; `field` names the config field in errors."""
    _require_curve()
    path = Path(path)
    if not path.is_file():
        raise TransportSecurityError(f"{field}: {path} does not exist (make one with `stream-monitor keys`)")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o037:  # group read is allowed: Kubernetes gives a Secret's files to the pod's fsGroup (0440)
        raise TransportSecurityError(f"{field}: {path} can be read or changed by other users (mode {mode:04o}); "
                                     f"chmod 600 {path}")
    public, secret = _load(path, field)
    if secret is None:
        raise TransportSecurityError(f"{field}: {path} holds no secret key (give the .key_secret file)")
    return public, secret


def load_public_key(path: str | Path, field: str) -> bytes:
    """The public key of a `.key` (or `.key_secret`) file."""
    _require_curve()
    if not Path(path).is_file():
        raise TransportSecurityError(f"{field}: {path} does not exist")
    return _load(Path(path), field)[0]


def _load(path: Path, field: str) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise TransportSecurityError(f"{field}: {path} is not a CURVE key file ({exc})") from exc
    if len(public) != 40:
        raise TransportSecurityError(f"{field}: {path} holds no valid public key")
    return public, secret


def secure_server(socket: zmq.Socket, server: CurveServer) -> None:
    """Make `socket` a CURVE server (before bind); clients are checked by the `ServerAuthenticator`."""
    socket.curve_secretkey = server.secret
    socket.curve_publickey = server.public
    socket.curve_server = True


def secure_client(socket: zmq.Socket, client: CurveClient) -> None:
    """Make `socket` a CURVE client of the server whose public key the config names (before connect)."""
    socket.curve_secretkey = client.secret
    socket.curve_publickey = client.public
    socket.curve_serverkey = client.server_public


class ServerAuthenticator:
    """The ZAP handler of a context: admits CURVE clients whose public key is a `*.key` file in the
    authorized folder (read at start; a restart picks up new keys). One per context, before binding."""

    def __init__(self, context: zmq.Context, server: CurveServer) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        if not server.authorized.is_dir() or not any(server.authorized.glob("*.key")):
            raise TransportSecurityError(f"transport.curve.authorized_keys: {server.authorized} holds no client "
                                         f"public key (*.key); copy the viewers' .key files there")
        self._auth = ThreadAuthenticator(context)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(server.authorized))

    def stop(self) -> None:
        self._auth.stop()


def await_handshake(monitor: zmq.Socket, endpoint: str, timeout_s: float = HANDSHAKE_TIMEOUT_S) -> None:
    """Wait for the CURVE handshake on the socket whose monitor socket is `monitor` (made with
    `socket.get_monitor_socket()` before `connect`); raise `TransportSecurityError` saying why not."""
    deadline = time.monotonic() + timeout_s
    failure = None
    while (remaining := deadline - time.monotonic()) > 0:
        if not monitor.poll(int(remaining * 1000) + 1):
            break
        event = recv_monitor_message(monitor)["event"]
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            return
        failure = _FAILED.get(event, failure)
        if failure == "auth":
            break
    if failure == "auth":
        raise TransportSecurityError(f"{endpoint} refused this client's CURVE key: its public key is not in the "
                                     f"monitor's transport.curve.authorized_keys folder")
    raise TransportSecurityError(
        f"no CURVE handshake with {endpoint} within {timeout_s:.0f} s"
        + (" (the handshake failed)" if failure else "")
        + ": transport.curve.server_public_key is not the monitor's public key, the monitor does not use CURVE, "
        "or no monitor is listening there")


def server_from_config(curve: object | None) -> CurveServer | None:
    """The monitor's CURVE settings from `transport.curve` (a CurveConfig), keys loaded; None = plain."""
    if curve is None or getattr(curve, "server_secret_key", None) is None:
        return None
    public, secret = load_secret_key(curve.server_secret_key, "transport.curve.server_secret_key")
    return CurveServer(public, secret, Path(curve.authorized_keys))


def client_from_config(curve: object | None) -> CurveClient | None:
    """A viewer's CURVE settings from `transport.curve`, keys loaded; None = plain. A config with only
    the monitor's keys cannot make a client: that is an error, not a silent plain connection."""
    if curve is None:
        return None
    if getattr(curve, "client_secret_key", None) is None:
        raise TransportSecurityError("transport.curve has no client_secret_key / server_public_key: this viewer "
                                     "cannot connect to a CURVE monitor without them")
    public, secret = load_secret_key(curve.client_secret_key, "transport.curve.client_secret_key")
    return CurveClient(public, secret, load_public_key(curve.server_public_key, "transport.curve.server_public_key"))


def reachable_off_host(endpoint: str) -> bool:
    """Whether a bound endpoint accepts connections from other hosts (tcp:// on anything but loopback)."""
    if not endpoint.startswith("tcp://"):
        return False  # ipc:// and inproc:// are local by nature
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    return not (host == "localhost" or host.startswith("127.") or host == "::1")
