"""The whole live pipeline on the embedded default, end to end, on the CPU (the clip plays for 36 s).

Assembles a real endoscopy clip from ../shared/data — HyperKvasir ID test images, then a real polyp
video (CVC-ClinicDB; OOD for this model), then other ID test images — or takes your folder or video
(--source), and runs it through real processes and sockets: a capture process paced at the clip's frame
rate, the inference process with the bundled EfficientNet-Lite0 and NERO detector on the CPU, ZeroMQ
results, /metrics, the alert audit log, and the overlay renderer writing an annotated MP4. Prints a
summary: frames/s, capture→result latency percentiles, the alerts and when they fired against the clip's
ID / OOD segments, and whether /metrics agrees with what the subscriber received.

examples:
  stream-monitor demo                                  # results/demo/demo_overlay.mp4 + summary.json
  stream-monitor demo --serve 8090                     # watch at http://127.0.0.1:8090/ while it runs
  stream-monitor demo --source ../shared/data/clips/ulcer_detection_Endoscopy_0_gastric_ulcer.mp4
  stream-monitor demo --ood hyperkvasir-polyp --fps 15 --out /tmp/demo
  stream-monitor demo --summary docs/results/demo/summary.json   # also record the summary (README's numbers)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2

from .. import bundled
from ..config import MonitorConfig
from ..data.images import list_images, read_image
from ..demo.clip import OOD_SOURCES, ClipInfo, assemble_demo_clip
from ..demo.drift_report import drift_summary
from ..demo.report import print_summary
from ..demo.summary import RunRecord, alert_timing, latency_summary, metric, scrape
from ..errors import InputError
from ..observability.metrics import DROP_REASONS
from ..overlay.sinks import opencv_has_gui
from ..pipeline.audit import read_audit_log
from ..pipeline.supervisor import Monitor
from ..service import configure_logging
from ..transport.collector import ResultCollector

STREAM = "endoscope"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", type=Path, help="your own video file or image folder instead of the assembled clip")
    parser.add_argument("--fps", type=float, default=None,
                        help="replay rate, frames/s (default: 10 for the clip and folders, a video's own rate)")
    parser.add_argument("--out", type=Path, default=Path("results/demo"), help="output folder (default: %(default)s)")
    parser.add_argument("--show", action="store_true", help="also show the overlay in a window (needs opencv-python)")
    parser.add_argument("--serve", nargs="?", const="127.0.0.1:8090", metavar="[HOST:]PORT",
                        help="serve the live overlay as MJPEG (default 127.0.0.1:8090); keeps running until Ctrl-C")
    parser.add_argument("--model", type=Path, default=None, help="classifier checkpoint (default: bundled)")
    parser.add_argument("--detector", type=Path, default=None, help="NERO artifact (default: bundled)")
    parser.add_argument("--arch", help="architecture of a --model without a .json sidecar (as for fit: timm:NAME, "
                        "torchvision:NAME, module, ...); config model.arch")
    parser.add_argument("--num-classes", type=int, help="classes of the --arch checkpoint's head")
    parser.add_argument("--head", help="dotted name of the model's final nn.Linear (torchvision: and module)")
    parser.add_argument("--trust-pickle", action="store_true", help="allow a whole-model pickle --model (runs code)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on a 2-core machine capture and overlay need the other core)")
    parser.add_argument("--ood", choices=sorted(OOD_SOURCES), default="cvc-clinicdb", help="OOD segment of the clip")
    parser.add_argument("--hold", type=int, default=2, help="frames each clip image is shown for (default: %(default)s)")
    parser.add_argument("--id-images", type=int, default=60, help="images per ID segment (default: %(default)s)")
    parser.add_argument("--ood-images", type=int, default=60, help="images in the OOD segment (default: %(default)s)")
    parser.add_argument("--metrics-port", type=int, default=0, help="/metrics port (default: any free port)")
    parser.add_argument("--keep-clip", action="store_true", help="keep the assembled source clip in --out")
    parser.add_argument("--summary", type=Path, default=None, metavar="FILE",
                        help="also write the run's summary JSON here (e.g. docs/results/demo/summary.json, "
                             "where the README's demo numbers come from)")
    parser.add_argument("--verbose", action="store_true", help="log every process's INFO messages")


def _check_arguments(args: argparse.Namespace) -> None:
    if args.show and not opencv_has_gui():
        raise InputError("--show needs an OpenCV with a GUI (pip install opencv-python) and a display; "
                         "use --serve to watch in a browser")
    _check_artifacts(args)


def _check_artifacts(args: argparse.Namespace) -> None:
    for flag, given, default in (("--model", args.model, bundled.MODEL), ("--detector", args.detector, bundled.DETECTOR)):
        if not (given or default).exists():
            raise InputError(f"{given or default} does not exist; pass {flag} (the bundled one ships with the package)")


def _source(args: argparse.Namespace, workdir: Path) -> tuple[dict, ClipInfo | None, tuple[int, int]]:
    """(source config, clip segments when the demo assembled the clip, ring frame size)."""
    if args.source is None:
        fps = args.fps or 10.0
        clip = assemble_demo_clip(workdir / "demo_clip.mp4", fps, args.hold, args.id_images, args.ood_images, args.ood)
        return {"kind": "file", "path": str(clip.path)}, clip, clip.size
    if args.source.is_dir():
        images = list_images(args.source, recursive=True)
        if not images:
            raise InputError(f"--source {args.source} holds no images")
        size = max((read_image(p).shape[1::-1] for p in images[:20]), key=lambda wh: wh[0] * wh[1])
        return {"kind": "folder", "path": str(args.source), "fps": args.fps or 10.0}, None, _capped(size)
    if args.source.is_file():
        capture = cv2.VideoCapture(str(args.source))
        size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        capture.release()
        if min(size) <= 0:
            raise InputError(f"cannot read --source {args.source} as a video with OpenCV")
        return {"kind": "file", "path": str(args.source), "pace": args.fps or "native"}, None, _capped(size)
    raise InputError(f"--source {args.source} is neither a video file nor a folder")


def _capped(size: tuple[int, int]) -> tuple[int, int]:
    """A ring slot for frames of this size, at most 1920 × 1080 (larger frames are shown shrunk)."""
    return min(size[0], 1920), min(size[1], 1080)


def _config(args: argparse.Namespace, source: dict, frame_size: tuple[int, int], workdir: Path) -> MonitorConfig:
    host, _, port = (args.serve or "").rpartition(":")
    return MonitorConfig.model_validate({
        "instance": f"demo{os.getpid()}",
        "streams": [{"name": STREAM, "source": source}],
        "model": {"checkpoint": args.model, "detector": args.detector, "threads": args.threads, "arch": args.arch,
                  "num_classes": args.num_classes, "head": args.head, "trust_pickle": args.trust_pickle},
        # 16 slots (1.6 s at 10 fps, ~19 MiB for the clip): the overlay reads each scored frame from the
        # ring after its result arrives, a few hundred milliseconds later on a busy machine.
        "pipeline": {"max_frame_size": list(frame_size), "ring_slots": 16},
        "transport": {"results": f"ipc://{workdir}/results.sock", "frames": f"ipc://{workdir}/frames.sock"},
        "metrics": {"port": args.metrics_port},
        "audit": {"path": str((args.out / "alerts.jsonl").resolve())},
        "overlay": {"stream": STREAM, "frames": "ring", "mp4": str((args.out / "demo_overlay.mp4").resolve()),
                    "window": args.show, "mjpeg_host": host or "127.0.0.1",
                    "mjpeg_port": int(port) if args.serve else None},
        "logging": {"level": "INFO" if args.verbose else "WARNING"},
    })


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the demo like Ctrl-C: processes stopped, summary written


def run(args: argparse.Namespace) -> int:
    _check_arguments(args)
    signal.signal(signal.SIGTERM, _interrupt)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "alerts.jsonl").unlink(missing_ok=True)  # the demo's log starts fresh; a monitor's appends
    workdir = Path(tempfile.mkdtemp(prefix="sm-demo-"))
    try:
        return _run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(args: argparse.Namespace, workdir: Path) -> int:
    source, clip, frame_size = _source(args, workdir)
    config = _config(args, source, frame_size, workdir)
    configure_logging(config.logging.level)
    if clip is not None and args.keep_clip:
        shutil.copy(clip.path, args.out / "demo_clip.mp4")
    print(f"stream-monitor demo: {'a real ID → OOD → ID clip' if clip else source['path']} through the live "
          f"pipeline on the CPU ({args.threads} torch thread{'s' * (args.threads != 1)}) …", flush=True)
    record = RunRecord()
    collector = ResultCollector(record.add)
    monitor = Monitor(config, wait_for_subscribers=1, on_endpoints=collector.start_on)
    metrics_text, started = "", time.monotonic()
    try:
        endpoints = monitor.start()
        if args.serve:
            print(f"live overlay: http://{config.overlay.mjpeg_host}:{config.overlay.mjpeg_port}/", flush=True)
        monitor.wait(until_done=True)
        time.sleep(0.5)  # the last results and alert events reach the subscriber
        if endpoints.metrics_url:
            metrics_text = urllib.request.urlopen(endpoints.metrics_url + "/metrics", timeout=10).read().decode()
        if args.serve or args.show:
            summary = _summary(args, config, clip, record, metrics_text, time.monotonic() - started)
            print_summary(summary)
            print("the source has ended; the overlay stays up — press Ctrl-C to quit", flush=True)
            monitor.wait()
    except KeyboardInterrupt:
        pass
    finally:
        codes = monitor.stop()
        collector.stop()
    summary = _summary(args, config, clip, record, metrics_text, time.monotonic() - started)
    summary["exit_codes"] = codes
    text = json.dumps(summary, indent=1) + "\n"
    (args.out / "summary.json").write_text(text)
    if args.summary is not None:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(text)
    if not (args.serve or args.show):
        print_summary(summary)
    return 0 if all(code in (0, None) for code in codes.values()) else 1


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working folder when it is inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _summary(args: argparse.Namespace, config: MonitorConfig, clip: ClipInfo | None, record: RunRecord,
             metrics_text: str, wall_s: float) -> dict:
    results = record.results
    samples = scrape(metrics_text) if metrics_text else {}
    span = (results[-1]["t_result"] - results[0]["t_capture"]) if len(results) > 1 else 0.0
    dropped = {f"{stage}/{reason}": int(metric(samples, "stream_monitor_frames_dropped_total", stage=stage, reason=reason))
               for stage, reason in DROP_REASONS}
    audit_path = config.audit.path
    summary = {
        "source": "assembled clip" if clip else str(args.source),
        "clip": None if clip is None else {"frames": clip.frames, "fps": clip.fps, "segments": [s.__dict__ for s in clip.segments]},
        "engine": {"threads": args.threads, "build": {k: v for (n, ls), _ in samples.items() if n == "stream_monitor_build_info" for k, v in ls},
                   "threshold": results[0]["threshold"] if results else None},
        "frames": {"captured": int(metric(samples, "stream_monitor_frames_captured_total")),
                   "scored": int(metric(samples, "stream_monitor_frames_processed_total")),
                   "results_received": len(results), "dropped": dropped},
        "throughput_fps": round(len(results) / span, 2) if span > 0 else None,
        "latency": latency_summary([r["latency_s"] for r in results]),
        "metrics": {"latency_count": int(metric(samples, "stream_monitor_capture_to_result_latency_seconds_count")),
                    "alerts_total": int(metric(samples, "stream_monitor_alerts_total"))},
        "alerts": [{k: a[k] for k in ("event", "alert_id", "seq", "t_capture", "score", "duration_s", "reason")}
                   for a in record.alerts],
        "alert_timing": alert_timing(record, clip) if clip is not None else None,
        "drift": drift_summary(results, clip, samples),
        "outputs": {"overlay_mp4": _shown(config.overlay.mp4), "audit_log": _shown(audit_path),
                    "summary": _shown(args.out / "summary.json"),
                    "audit_records": len(read_audit_log(audit_path)) if audit_path.exists() else 0},
        "machine": {"cpu": _cpu_model(), "cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
                    "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "wall_s": round(wall_s, 1),
    }
    return summary
