"""ZeroMQ CURVE on the result and frame sockets (issue 16): patient video and alerts only for a key holder.

Real sockets throughout: a publisher with the monitor's key pair and a ZAP handler admitting one client
key; subscribers with that key, with another key, with no CURVE at all, and with a wrong server key.
The last test runs the real monitor (inference process, frame publisher, a replayed clip) with CURVE and
checks both of its sockets.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest
import zmq

from stream_monitor.cli import main
from stream_monitor.config import MonitorConfig
from stream_monitor.pipeline.supervisor import Monitor
from stream_monitor.transport.schema import decode, topic
from stream_monitor.transport.security import (
    CurveClient,
    CurveServer,
    ServerAuthenticator,
    TransportSecurityError,
    load_public_key,
    load_secret_key,
)
from stream_monitor.transport.sockets import Publisher, drain, make_subscriber

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="this libzmq has no CURVE")


@pytest.fixture
def keys(tmp_path) -> Path:
    """A monitor pair, an admitted viewer pair (its public key in authorized/), and an outsider pair,
    all made by the real `stream-monitor keys` command."""
    folder = tmp_path / "keys"
    for name in ("monitor", "viewer", "outsider"):
        assert main(["keys", "--out", str(folder), "--name", name]) == 0
    (folder / "authorized").mkdir()
    (folder / "authorized" / "viewer.key").write_text((folder / "viewer.key").read_text())
    return folder


def _server(keys: Path) -> CurveServer:
    public, secret = load_secret_key(keys / "monitor.key_secret", "server")
    return CurveServer(public, secret, keys / "authorized")


def _client(keys: Path, name: str, server: str = "monitor") -> CurveClient:
    public, secret = load_secret_key(keys / f"{name}.key_secret", "client")
    return CurveClient(public, secret, load_public_key(keys / f"{server}.key", "server public"))


def test_keys_are_written_mode_0600_as_a_matching_pair_and_never_overwritten(keys, capsys):
    for name in ("monitor.key", "monitor.key_secret"):
        assert stat.S_IMODE((keys / name).stat().st_mode) == 0o600
    public, secret = load_secret_key(keys / "monitor.key_secret", "f")
    assert zmq.curve_public(secret) == public == load_public_key(keys / "monitor.key", "f")
    assert main(["keys", "--out", str(keys), "--name", "monitor"]) == 1
    assert "exists" in capsys.readouterr().err
    os.chmod(keys / "viewer.key_secret", 0o644)
    with pytest.raises(TransportSecurityError, match="chmod 600"):
        load_secret_key(keys / "viewer.key_secret", "transport.curve.client_secret_key")


def _publish_until(publisher: Publisher, stop: threading.Event) -> None:
    while not stop.is_set():
        publisher.poll_subscriptions()
        publisher.send([topic("result", "endo"), b"patient data"])
        time.sleep(0.01)


def test_only_an_admitted_key_receives_and_the_others_get_a_clear_error_or_nothing(keys, tmp_path):
    context = zmq.Context()
    server = _server(keys)
    authenticator = ServerAuthenticator(context, server)
    publisher = Publisher(context, "tcp://127.0.0.1:0", 100, server)
    stop = threading.Event()
    # The publisher runs in its own thread (ZeroMQ sockets are single-threaded: only it touches it).
    sender = threading.Thread(target=_publish_until, args=(publisher, stop))
    sockets = []
    try:
        sender.start()
        admitted = make_subscriber(context, publisher.endpoint, [b"result/"], curve=_client(keys, "viewer"))
        sockets.append(admitted)
        with pytest.raises(TransportSecurityError, match="not in the monitor's transport.curve.authorized_keys"):
            make_subscriber(context, publisher.endpoint, [b"result/"], curve=_client(keys, "outsider"),
                            handshake_timeout_s=5)
        # Subscribers that do not wait for the handshake: one with the outsider's key, one plain.
        outsider = context.socket(zmq.SUB)
        plain = context.socket(zmq.SUB)
        sockets += [outsider, plain]
        client = _client(keys, "outsider")
        outsider.curve_secretkey, outsider.curve_publickey, outsider.curve_serverkey = \
            client.secret, client.public, client.server_public
        for socket in (outsider, plain):
            socket.linger = 0
            socket.subscribe(b"")
            socket.connect(publisher.endpoint)
        time.sleep(1.5)  # 150 messages sent meanwhile
        assert [m[-1].bytes for m in drain(admitted)][-1] == b"patient data"
        assert drain(outsider) == [] and drain(plain) == []
    finally:
        stop.set()
        sender.join(5)
        for socket in sockets:
            socket.close(linger=0)
        publisher.close()
        authenticator.stop()
        context.term()


def test_a_wrong_server_key_fails_with_an_error_naming_the_setting(keys):
    context = zmq.Context()
    server = _server(keys)
    authenticator = ServerAuthenticator(context, server)
    publisher = Publisher(context, "tcp://127.0.0.1:0", 100, server)
    try:
        started = time.monotonic()
        with pytest.raises(TransportSecurityError, match="server_public_key is not the monitor's public key"):
            make_subscriber(context, publisher.endpoint, [b"result/"], curve=_client(keys, "viewer", server="outsider"),
                            handshake_timeout_s=2)
        assert time.monotonic() - started < 10
    finally:
        publisher.close()
        authenticator.stop()
        context.term()


def test_the_running_monitor_serves_results_and_frames_only_to_the_admitted_key(tmp_path, keys, live_model, e2e_clip,
                                                                              free_port):
    """The real monitor with transport.curve on TCP: the admitted viewer gets results and JPEG frames;
    a subscriber with another key gets nothing from either socket, while the same replay runs."""
    results, frames = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    config = MonitorConfig.model_validate({
        "instance": f"curve{tmp_path.name[-8:].replace('_', '')}",
        "streams": [{"name": "endo", "source": {"kind": "file", "path": str(e2e_clip.path), "loop": True}}],
        "model": {"checkpoint": str(live_model.checkpoint), "detector": str(live_model.detector), "threads": 1},
        "pipeline": {"max_frame_size": [640, 540]},
        "transport": {"results": results, "frames": frames, "curve": {
            "server_secret_key": str(keys / "monitor.key_secret"), "authorized_keys": str(keys / "authorized")}},
        "metrics": {"enabled": False},
        "audit": {"path": str(tmp_path / "alerts.jsonl")},
    })
    context = zmq.Context()
    sockets: list[zmq.Socket] = []
    monitor = Monitor(config)
    try:
        monitor.start()
        admitted = _client(keys, "viewer")
        sockets += [make_subscriber(context, endpoint, [prefix], curve=admitted)
                    for endpoint, prefix in ((results, b"result/"), (frames, b"frame/"))]
        outsider = _client(keys, "outsider")
        for endpoint in (results, frames):
            socket = context.socket(zmq.SUB)
            socket.linger = 0
            socket.curve_secretkey, socket.curve_publickey, socket.curve_serverkey = \
                outsider.secret, outsider.public, outsider.server_public
            socket.subscribe(b"")
            socket.connect(endpoint)
            sockets.append(socket)
        received = [[] for _ in sockets]
        deadline = time.monotonic() + 60
        while not (received[0] and received[1]) and time.monotonic() < deadline:
            time.sleep(0.2)
            for i, socket in enumerate(sockets):
                received[i] += drain(socket)
        time.sleep(1.0)
        for i, socket in enumerate(sockets):
            received[i] += drain(socket)
        assert received[0] and decode(received[0][-1][-1].buffer)["type"] in ("result", "status")
        assert received[1] and len(received[1][-1]) == 3  # [topic, header, JPEG]
        assert received[2] == [] and received[3] == [], "a subscriber with another key received data"
    finally:
        for socket in sockets:
            socket.close(linger=0)
        context.term()
        monitor.stop()


def test_a_monitor_whose_key_file_is_missing_refuses_to_start_naming_the_field(tmp_path, keys, live_model, e2e_clip):
    """Before the model loads and before any frame is captured: the error names the config field and the
    file, and says how to make one."""
    from stream_monitor.pipeline.preflight import StartupError

    config = MonitorConfig.model_validate({
        "instance": f"curvemiss{tmp_path.name[-6:].replace('_', '')}",
        "streams": [{"name": "endo", "source": {"kind": "file", "path": str(e2e_clip.path)}}],
        "model": {"checkpoint": str(live_model.checkpoint), "detector": str(live_model.detector), "threads": 1},
        "pipeline": {"max_frame_size": [640, 540]},
        "transport": {"results": f"ipc://{tmp_path}/r.sock", "frames": None, "curve": {
            "server_secret_key": str(keys / "absent.key_secret"), "authorized_keys": str(keys / "authorized")}},
        "metrics": {"enabled": False},
        "audit": {"path": str(tmp_path / "alerts.jsonl")},
    })
    monitor = Monitor(config)
    try:
        with pytest.raises(StartupError) as caught:
            monitor.start()
    finally:
        monitor.stop()
    assert str(caught.value) == (f"cannot start the monitor: transport.curve.server_secret_key: "
                                 f"{keys / 'absent.key_secret'} does not exist (make one with `stream-monitor keys`)")
