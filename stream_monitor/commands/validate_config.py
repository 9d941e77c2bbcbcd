"""Check monitor config files without starting anything: YAML syntax, unknown keys, types, ranges,
cross-field rules; every problem is printed with its file, line and column. Exit status 0 when all
files are valid, 1 otherwise (use it in CI and before `systemctl reload`).

examples:
  stream-monitor validate-config configs/monitor.example.yaml
  stream-monitor validate-config configs/*.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..capture.sources import opencv_has_gstreamer
from ..config import FileSource, FolderSource, GStreamerSource, MonitorConfig
from ..config_yaml import ConfigError, load_config
from ..transport.security import reachable_off_host


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, help="YAML config files")


def _warnings(config: MonitorConfig) -> list[str]:
    """Things that are valid but will not work on this machine."""
    notes = []
    for stream in config.streams:
        source = stream.source
        if isinstance(source, (FileSource, FolderSource)) and not source.path.exists():
            notes.append(f"streams.{stream.name}: {source.path} does not exist (yet)")
        if isinstance(source, GStreamerSource) and not opencv_has_gstreamer():
            notes.append(f"streams.{stream.name}: this OpenCV has no GStreamer back-end")
    for label, endpoint in (("transport.results", config.transport.results), ("transport.frames", config.transport.frames)):
        if endpoint and config.transport.curve is None and reachable_off_host(endpoint):
            notes.append(f"{label}: {endpoint} is reachable from other hosts without transport.curve: anyone who "
                         f"can connect receives the results and video (docs/deploy.md, networking)")
    for label, path in (("model.checkpoint", config.model.checkpoint), ("model.detector", config.model.detector)):
        if path is not None and not path.exists():
            notes.append(f"{label}: {path} does not exist")
    return notes


def run(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            config = load_config(path)
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem.format(str(path)), file=sys.stderr)
            status = 1
            continue
        streams = ", ".join(f"{s.name} ({s.source.kind})" for s in config.streams)
        print(f"{path}: OK — {len(config.streams)} stream(s): {streams}")
        for note in _warnings(config):
            print(f"{path}: warning: {note}")
    return status
