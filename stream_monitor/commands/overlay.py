"""Show a running monitor's results on its video: alert banner, score gauge against the threshold, class
and probability, the neurons that deviate most, the heatmap. Subscribes to the monitor's results and
takes frames either from its viewer-frame topic (JPEG over ZeroMQ, from any machine) or, on the
monitor's host, straight from the stream's shared-memory ring (--ring). Sinks: an OpenCV window
(--window, needs opencv-python and a display), an MP4 file (--mp4), and a browser page (--serve).
On exit it prints what it received and the sequence gaps it counted.

examples:
  stream-monitor overlay --config configs/monitor.example.yaml --serve 8090
  stream-monitor overlay --results tcp://10.0.0.5:5560 --frames tcp://10.0.0.5:5561 --window
  stream-monitor overlay --results tcp://127.0.0.1:5560 --ring sm-monitor-endo1 --mp4 out.mp4 --duration 60
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path

from ..capture.ring import ring_name
from ..config import OverlayConfig
from ..config_yaml import load_config
from ..errors import InputError, StreamMonitorError
from ..overlay.process import build_sinks
from ..overlay.viewer import OverlayViewer
from ..service import configure_logging
from ..transport.security import client_from_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="take endpoints (and --stream's ring) from a monitor config")
    parser.add_argument("--results", help="results endpoint, e.g. tcp://127.0.0.1:5560")
    frames = parser.add_mutually_exclusive_group()
    frames.add_argument("--frames", help="viewer-frame endpoint, e.g. tcp://127.0.0.1:5561")
    frames.add_argument("--ring", help="read frames from this local shared-memory ring instead (sm-INSTANCE-STREAM)")
    parser.add_argument("--local", action="store_true", help="with --config: read frames from the local ring")
    parser.add_argument("--stream", help="stream to show (default: the first one seen)")
    parser.add_argument("--window", action="store_true", help="show an OpenCV window (q or Esc quits)")
    parser.add_argument("--mp4", type=Path, help="write the overlay to this MP4 file")
    parser.add_argument("--mp4-fps", type=float, default=15.0, help="frame rate of the MP4 (default: %(default)s)")
    parser.add_argument("--serve", metavar="[HOST:]PORT", help="serve the live overlay as MJPEG on this port")
    parser.add_argument("--no-heatmap", action="store_true", help="do not draw the heatmap")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument("--idle-exit", type=float, metavar="S", help="stop when no result arrived for S seconds")


def _endpoints(args: argparse.Namespace) -> tuple[str, str | None, str | None, str | None]:
    """(results, frames endpoint, ring name, stream) from the flags and the optional config."""
    results, frames, ring, stream = args.results, args.frames, args.ring, args.stream
    if args.config is not None:
        config = load_config(args.config)
        results = results or config.transport.results
        stream = stream or config.streams[0].name
        if args.local and ring is None:
            ring = ring_name(config.instance, stream)
        elif ring is None:
            frames = frames or config.transport.frames
    if not results:
        raise InputError("give --results ENDPOINT (or --config FILE)")
    if frames is None and ring is None:
        raise InputError("give --frames ENDPOINT or --ring NAME (or --config FILE)")
    return results, frames, ring, stream


def _serve_address(text: str | None) -> tuple[str, int | None]:
    if text is None:
        return "127.0.0.1", None
    host, _, port = text.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise InputError(f"--serve expects [HOST:]PORT, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    configure_logging("INFO")
    results, frames, ring, stream = _endpoints(args)
    host, port = _serve_address(args.serve)
    config = OverlayConfig(window=args.window, mp4=args.mp4, mp4_fps=args.mp4_fps, mjpeg_host=host,
                           mjpeg_port=port, heatmap=not args.no_heatmap)
    # CURVE keys (transport.curve) come from the monitor config; plain without one.
    curve = client_from_config(load_config(args.config).transport.curve) if args.config is not None else None
    sinks = build_sinks(config, stream or "")
    for sink in sinks:
        if hasattr(sink, "url"):
            print(f"live overlay: {sink.url}", flush=True)
    try:
        viewer = OverlayViewer(results, stream, sinks, frames, ring, config.heatmap, curve=curve)
    except StreamMonitorError:
        for sink in sinks:
            sink.close()
        raise
    except FileNotFoundError:
        for sink in sinks:
            sink.close()
        raise InputError(f"no shared-memory ring {ring!r} on this host (is the monitor running here?)") from None
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    deadline = None if args.duration is None else time.monotonic() + args.duration
    try:
        viewer.run(lambda: stop.is_set() or (deadline is not None and time.monotonic() > deadline), args.idle_exit)
    except KeyboardInterrupt:
        pass
    finally:
        viewer.close()
        signal.signal(signal.SIGTERM, previous)
    s = viewer.stats
    print(f"overlay: {s.results} results, {s.frames} frames received, {s.rendered} rendered; "
          f"{s.lost_results} results lost in transport, {s.skipped_frames} frames skipped by the monitor, "
          f"{s.frames_missing} frames no longer in the ring, {s.invalid_messages} invalid messages")
    return 0
