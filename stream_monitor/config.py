"""The live monitor's configuration: one YAML file, one typed tree, unknown keys rejected.

Every model forbids extra keys (a misspelt `treshold:` is an error, not a silently ignored line), every
field has a unit in its name or docstring and a default that works on the embedded CPU set-up. Loading
maps pydantic's errors back to YAML line numbers (`stream_monitor.config_yaml`). Relative paths are
resolved against the config file's folder, so a config works from any working directory.

Only `alerts` (global and per stream) and `logging.level` are applied on reload; see `reload_changes`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["AlertConfig", "AlertOverride", "AuditConfig", "CameraSource", "FileSource", "FolderSource",
           "GStreamerSource", "LoggingConfig", "MetricsConfig", "ModelConfig", "MonitorConfig",
           "OverlayConfig", "PipelineConfig", "RtspSource", "ScopeMaskConfig", "SmoothingConfig",
           "SourceConfig", "StreamConfig", "TransportConfig", "reload_changes"]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"  # stream and instance names end up in shm names and topics


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- sources
class CameraSource(_Strict):
    """A V4L2 device or capture card: `device` index (/dev/videoN) or path."""

    kind: Literal["camera"]
    device: int | str = 0
    width: int | None = Field(None, gt=0, description="requested capture width, pixels")
    height: int | None = Field(None, gt=0, description="requested capture height, pixels")
    fps: float | None = Field(None, gt=0, description="requested capture rate, frames/s")
    fourcc: str | None = Field(None, min_length=4, max_length=4, description="e.g. MJPG for USB capture cards")


class FileSource(_Strict):
    """A video file, paced at its own frame rate (`pace: native`), a given rate, or as fast as possible."""

    kind: Literal["file"]
    path: Path
    pace: Literal["native", "max"] | Annotated[float, Field(gt=0)] = "native"
    speed: float = Field(1.0, gt=0, description="multiplies the native rate (2 = twice as fast)")
    loop: bool = False
    lossless: bool = Field(False, description="wait for inference instead of dropping frames (replay of "
                                              "recorded procedures); never for live sources")


class RtspSource(_Strict):
    """An RTSP (or RTSPS) camera or encoder, read with OpenCV's FFmpeg back-end."""

    kind: Literal["rtsp"]
    url: str
    transport: Literal["tcp", "udp"] = "tcp"

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str) -> str:
        if not re.match(r"^rtsps?://", url):
            raise ValueError("must start with rtsp:// or rtsps://")
        return url


class GStreamerSource(_Strict):
    """A GStreamer pipeline string ending in `appsink` (needs OpenCV built with GStreamer)."""

    kind: Literal["gstreamer"]
    pipeline: str

    @field_validator("pipeline")
    @classmethod
    def _appsink(cls, pipeline: str) -> str:
        if "appsink" not in pipeline:
            raise ValueError("a GStreamer pipeline for OpenCV must end in an appsink element")
        return pipeline


class FolderSource(_Strict):
    """A folder of images (sorted by relative path) replayed at `fps`."""

    kind: Literal["folder"]
    path: Path
    fps: float = Field(10.0, gt=0, description="replay rate, frames/s")
    loop: bool = False
    recursive: bool = True
    lossless: bool = False


SourceConfig = Annotated[Union[CameraSource, FileSource, RtspSource, GStreamerSource, FolderSource],
                         Field(discriminator="kind")]


# --------------------------------------------------------------------------- per-stream settings
class ScopeMaskConfig(_Strict):
    """How the endoscope's black mask is handled before the model (see stream_monitor.scope_mask)."""

    mode: Literal["auto", "always", "off"] = "auto"
    threshold: int = Field(20, ge=0, le=255, description="grey level above which a pixel is lit")
    min_fraction: float = Field(0.1, gt=0, le=1, description="share of lit pixels for a row/column to count")
    margin: float = Field(0.01, ge=0, lt=0.5, description="border kept around the scope, fraction of the side")
    crop_below: float = Field(0.9, gt=0, le=1, description="'auto' crops only when the scope covers less")
    smoothing: float = Field(0.2, gt=0, le=1, description="weight of the newest box in the running box")


class SmoothingConfig(_Strict):
    """Score smoothing before the threshold: none, exponential moving average, or running median."""

    method: Literal["none", "ema", "median"] = "none"
    alpha: float = Field(0.5, gt=0, le=1, description="EMA weight of the newest score")
    window: int = Field(5, ge=1, le=1000, description="median window, frames")


class AlertConfig(_Strict):
    """Alert hysteresis: enter after `enter_n` of the last `enter_m` scored frames are over the threshold,
    leave after a quiet period: `clear_after_s` seconds (capture time) in which at most `quiet_fraction`
    of the scored frames were over it (see stream_monitor/pipeline/alerts.py).

    The defaults (12 of 20, 2 s) were chosen on real clips at 10 scored frames/s with
    benchmarks/alert_timing.py and the bundled detector: no false alert in 11 minutes of HyperKvasir ID
    test footage (0.27 per minute for 8 of 15, 2.95 for 3 of 5), 25 of 26 OOD segments alerted, median
    delay 1.2 s (results in benchmarks/results/alert_timing-*.md). At other scored frame rates scale n and
    m with the rate to keep the same two-second window.
    """

    threshold: float | None = Field(None, description="NERO score; null = the detector's calibrated threshold")
    enter_n: int = Field(12, ge=1)
    enter_m: int = Field(20, ge=1, le=1000)
    clear_after_s: float = Field(2.0, ge=0, description="quiet period before an alert ends, seconds")
    quiet_fraction: float = Field(0.2, ge=0, lt=1, description="share of a quiet period's frames that may "
                                  "be over the threshold (0 = none)")
    smoothing: SmoothingConfig = SmoothingConfig()

    @model_validator(mode="after")
    def _n_of_m(self) -> "AlertConfig":
        if self.enter_n > self.enter_m:
            raise ValueError(f"enter_n ({self.enter_n}) must not exceed enter_m ({self.enter_m})")
        return self


class AlertOverride(_Strict):
    """Per-stream changes to the global `alerts` section; unset fields keep the global value."""

    threshold: float | None = None
    enter_n: int | None = Field(None, ge=1)
    enter_m: int | None = Field(None, ge=1, le=1000)
    clear_after_s: float | None = Field(None, ge=0)
    quiet_fraction: float | None = Field(None, ge=0, lt=1)
    smoothing: SmoothingConfig | None = None


class StreamConfig(_Strict):
    """One video source and how it is monitored."""

    name: str = Field(pattern=_NAME)
    source: SourceConfig
    scope_mask: ScopeMaskConfig = ScopeMaskConfig()
    alerts: AlertOverride | None = None


# --------------------------------------------------------------------------- services
class ModelConfig(_Strict):
    """The classifier and its NERO detector; null = the bundled EfficientNet-Lite0 and detector."""

    checkpoint: Path | None = None
    detector: Path | None = None
    arch: str | None = Field(None, description="architecture of a checkpoint without a stream-monitor .json sidecar: "
                             "resnet18, deit_small_patch16_224, efficientnet_lite0, timm:NAME, torchvision:NAME or "
                             "module (a whole pickled nn.Module: needs trust_pickle); null = read the sidecar. "
                             ".pt2 files (torch.export) need none")
    num_classes: int | None = Field(None, ge=1, description="classes of the head, with arch (not for module)")
    head: str | None = Field(None, description="dotted name of the final nn.Linear (torchvision: and module; "
                             "null = the last nn.Linear, verified)")
    trust_pickle: bool = Field(False, description="allow a whole-model pickle checkpoint (it runs code when loaded)")
    backend: Literal["auto", "tensorrt", "torch-cuda", "openvino", "torch-cpu", "torch-cpu-reference"] = Field(
        "auto", description="engine back-end: auto, tensorrt, torch-cuda, openvino, torch-cpu "
                         "or torch-cpu-reference (the unfused NumPy-detector path)")
    precision: Literal["fp32", "fp16", "bf16", "auto"] = Field(
        "fp32", description="backbone precision; fp16/bf16 are faster but move scores against a threshold "
        "calibrated in fp32 (bf16, bundled model on 441 real frames: median 0.7%, worst 11% relative, "
        "7-9 alert decisions flipped; fp32: worst 5e-6, none; benchmarks/results/openvino_parity-*)")
    threads: int | None = Field(None, ge=1, description="CPU threads for the engine; null = all cores but one")
    top_neurons: int = Field(5, ge=0, le=64)
    heatmap: bool = True
    map_budget: float = Field(0.05, ge=0, le=1, description="the most the scene map, drawn on alerting frames, "
                              "may cost as a share of the engine's time (explanations/pacing.py); alerting frames "
                              "beyond it show their stream's latest map. 0 = never draw it. 0.05: issue 18's 10 % "
                              "less what the explanation adds to every frame (descriptor pooling in the graph, score "
                              "drivers: 3.2 % on OpenVINO, benchmarks/results/explanation_cost-*)")
    map_hold_s: float = Field(1.0, ge=0, le=60, description="how long a stream's latest scene map stands in on "
                              "the alerting frames the budget skipped, seconds of capture time; older: the "
                              "deviation heatmap")


class PipelineConfig(_Strict):
    """Shared-memory ring and batcher."""

    max_batch: int = Field(8, ge=1, le=256, description="frames per inference batch")
    max_wait_ms: float = Field(5.0, ge=0, le=1000, description="wait for other streams' frames, milliseconds")
    frames_per_stream: int = Field(1, ge=1, description="newest frames of one stream per batch (1 = live)")
    ring_slots: int = Field(4, ge=2, le=256, description="frames held per stream in shared memory")
    max_frame_size: tuple[int, int] = Field((1920, 1080), description="(width, height) of a ring slot, "
                                            "pixels; larger frames are shrunk for display, never for the model")
    max_frame_age_ms: float | None = Field(None, gt=0, description="drop frames older than this at batching")
    capture_threads: int = Field(1, ge=1, le=64, description="OpenCV and FFmpeg-decoder threads per capture "
                                 "process; more only for streams one core cannot decode")
    frame_skipping: bool = Field(False, description="capture processes only decode (no colour conversion, "
                                 "crop, resize or copy) while the frame they wrote last is still waiting for the "
                                 "model; for many streams on few cores. Skipped frames are counted as dropped")


class CurveConfig(_Strict):
    """ZeroMQ CURVE on the result and frame sockets (stream_monitor/transport/security.py): encrypted,
    and only clients whose public key is in `authorized_keys` receive anything. Key files come from
    `stream-monitor keys`. The monitor needs the server pair; the viewer (`overlay:` or `stream-monitor
    overlay`) the client pair."""

    server_secret_key: Path | None = Field(None, description="the monitor's key pair (.key_secret, mode 0600)")
    authorized_keys: Path | None = Field(None, description="folder of the client public keys (*.key) admitted")
    client_secret_key: Path | None = Field(None, description="this viewer's key pair (.key_secret, mode 0600)")
    server_public_key: Path | None = Field(None, description="the monitor's public key (.key), for viewers")

    @model_validator(mode="after")
    def _pairs(self) -> "CurveConfig":
        if (self.server_secret_key is None) != (self.authorized_keys is None):
            raise ValueError("transport.curve: server_secret_key and authorized_keys go together")
        if (self.client_secret_key is None) != (self.server_public_key is None):
            raise ValueError("transport.curve: client_secret_key and server_public_key go together")
        if self.server_secret_key is None and self.client_secret_key is None:
            raise ValueError("transport.curve: give the monitor's keys (server_secret_key, authorized_keys), "
                             "a viewer's (client_secret_key, server_public_key), or both")
        return self


class TransportConfig(_Strict):
    """ZeroMQ endpoints (tcp://HOST:PORT or ipc://PATH) for results and viewer frames."""

    results: str = "tcp://127.0.0.1:5560"
    frames: str | None = "tcp://127.0.0.1:5561"
    send_hwm: int = Field(16, ge=1, description="messages queued per subscriber before dropping")
    jpeg_quality: int = Field(80, ge=10, le=100)
    frames_max_fps: float = Field(15.0, gt=0, description="viewer frame rate cap per stream, frames/s")
    heatmap: bool = Field(True, description="include the small heatmap in result messages")
    curve: CurveConfig | None = Field(None, description="CURVE encryption and client keys; null = plain "
                                      "(only for loopback / ipc endpoints)")


class HttpSecurityConfig(_Strict):
    """TLS and HTTP basic auth for an HTTP port (stream_monitor/observability/http_handler.py). /healthz and /readyz
    stay open for probes. Files with secrets must not be readable by other users (chmod 600)."""

    cert_file: Path | None = Field(None, description="PEM certificate (chain) served for TLS")
    key_file: Path | None = Field(None, description="PEM private key of cert_file (mode 0600)")
    username: str | None = Field(None, min_length=1, description="basic-auth user name")
    password_file: Path | None = Field(None, description="file holding the basic-auth password (mode 0600)")

    @model_validator(mode="after")
    def _pairs(self) -> "HttpSecurityConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together")
        if self.cert_file is None and self.username is None:
            raise ValueError("give TLS (cert_file, key_file), basic auth (username, password_file), or both")
        return self


class MetricsConfig(_Strict):
    """Prometheus /metrics, /healthz and /readyz on one HTTP port."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535, description="0 = any free port (tests)")
    frame_rate_hz: float = Field(30.0, gt=0, description="latency histogram buckets are multiples of 1/this")
    stale_after_s: float = Field(5.0, gt=0, description="/readyz fails when a live stream is silent this long")
    security: HttpSecurityConfig | None = Field(None, description="TLS and basic auth for /metrics; null = plain")


class AuditConfig(_Strict):
    """Alert audit log: one JSON line per alert start / end, fsynced."""

    path: Path = Path("alerts.jsonl")
    rotate_bytes: int | None = Field(None, gt=0, description="rename the log to <name>.<UTC time> once it "
                                     "reaches this size (bytes) and start a new one; the hash chain runs on "
                                     "(null = never rotate)")


class OverlayConfig(_Strict):
    """An overlay renderer started with the monitor (the `overlay` command runs one on its own)."""

    stream: str | None = Field(None, description="stream to show; null = the first one")
    frames: Literal["ring", "zmq"] = "ring"
    window: bool = False
    mp4: Path | None = None
    mp4_fps: float = Field(15.0, gt=0)
    mjpeg_host: str = "127.0.0.1"
    mjpeg_port: int | None = Field(None, ge=0, le=65535)
    mjpeg_security: HttpSecurityConfig | None = Field(None, description="TLS and basic auth for the MJPEG page")
    heatmap: bool = True


class DriftConfig(_Strict):
    """Stream-level "input not validated" signal (stream_monitor/drift.py, docs/drift-and-enrollment.md):
    a Bernoulli CUSUM on whether sampled frames score over the alert threshold, against the share the
    calibration expects. Separate from the OOD alert: it asks whether the footage as a whole is like the
    footage the detector was validated on, over tens of seconds to minutes, not whether this view is normal."""

    enabled: bool = True
    expected_share: float = Field(0.05, gt=0, lt=0.5, description="share of validated footage over the "
                                  "threshold: 1 − the detector's calibration target TPR")
    raise_share: float = Field(0.25, gt=0, lt=1, description="the smallest sustained share worth raising for")
    false_raise_hours: float = Field(8.0, gt=0, le=1000, description="mean hours between false raises on "
                                     "validated footage, if sampled frames were independent")
    sample_interval_s: float = Field(1.0, gt=0, le=60, description="one decision per this many seconds")
    window_s: float = Field(120.0, gt=0, description="the recent share shown and exported covers this long")

    @model_validator(mode="after")
    def _ordered(self) -> "DriftConfig":
        if self.raise_share <= self.expected_share:
            raise ValueError("drift.raise_share must be above drift.expected_share")
        return self


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class MonitorConfig(_Strict):
    """The whole monitor: streams, model, pipeline, alerts, transport, metrics, audit, overlay, logging."""

    version: Literal[1] = 1
    instance: str = Field("monitor", pattern=_NAME, description="names the shared-memory rings")
    streams: list[StreamConfig] = Field(min_length=1)
    model: ModelConfig = ModelConfig()
    pipeline: PipelineConfig = PipelineConfig()
    alerts: AlertConfig = AlertConfig()
    transport: TransportConfig = TransportConfig()
    metrics: MetricsConfig = MetricsConfig()
    audit: AuditConfig = AuditConfig()
    overlay: OverlayConfig | None = None
    logging: LoggingConfig = LoggingConfig()
    drift: DriftConfig = DriftConfig()

    @model_validator(mode="after")
    def _consistent(self) -> "MonitorConfig":
        names = [s.name for s in self.streams]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"stream names must be unique; repeated: {', '.join(repeated)}")
        if self.overlay is not None and self.overlay.stream not in (None, *names):
            raise ValueError(f"overlay.stream {self.overlay.stream!r} is not one of the streams ({', '.join(names)})")
        if self.pipeline.frames_per_stream > self.pipeline.ring_slots - 1:
            raise ValueError("pipeline.frames_per_stream must be below pipeline.ring_slots (one slot is "
                             "always being written)")
        for stream in self.streams:
            merged = self.alerts_for(stream.name)  # validates n ≤ m after the per-stream override
            del merged
        return self

    def stream(self, name: str) -> StreamConfig:
        return next(s for s in self.streams if s.name == name)

    def alerts_for(self, name: str) -> AlertConfig:
        """The global alert settings with this stream's overrides applied."""
        override = self.stream(name).alerts
        if override is None:
            return self.alerts
        changes = override.model_dump(exclude_none=True)
        if "smoothing" in changes:
            changes["smoothing"] = override.smoothing
        return AlertConfig(**{**self.alerts.model_dump(), **changes})

    def resolve_paths(self, base: Path) -> "MonitorConfig":
        """A copy with relative file paths made absolute against `base` (the config file's folder)."""
        def fix(path: Path | None) -> Path | None:
            return None if path is None or path.is_absolute() else base / path

        streams = []
        for s in self.streams:
            source = s.source
            if isinstance(source, (FileSource, FolderSource)):
                source = source.model_copy(update={"path": fix(source.path) or source.path})
            streams.append(s.model_copy(update={"source": source}))
        model = self.model.model_copy(update={k: fix(getattr(self.model, k)) or getattr(self.model, k)
                                              for k in ("checkpoint", "detector")})
        audit = self.audit.model_copy(update={"path": fix(self.audit.path) or self.audit.path})
        transport = self.transport
        if transport.curve is not None:
            curve = transport.curve.model_copy(update={k: fix(getattr(transport.curve, k)) or getattr(transport.curve, k)
                                                       for k in type(transport.curve).model_fields})
            transport = transport.model_copy(update={"curve": curve})
        def fix_all(section):  # every path field of a small section (keys, certificates, password files)
            return None if section is None else section.model_copy(
                update={k: fix(getattr(section, k)) or getattr(section, k) for k in type(section).model_fields
                        if isinstance(getattr(section, k), Path)})

        overlay = self.overlay
        if overlay is not None and overlay.mp4 is not None:
            overlay = overlay.model_copy(update={"mp4": fix(overlay.mp4) or overlay.mp4})
        if overlay is not None:
            overlay = overlay.model_copy(update={"mjpeg_security": fix_all(overlay.mjpeg_security)})
        metrics = self.metrics.model_copy(update={"security": fix_all(self.metrics.security)})
        return self.model_copy(update={"streams": streams, "model": model, "audit": audit, "overlay": overlay,
                                       "transport": transport, "metrics": metrics})


def reload_changes(old: MonitorConfig, new: MonitorConfig) -> tuple[list[str], list[str]]:
    """(applied, ignored): top-level sections that changed and are applied live, and those that need a
    restart. Per-stream `alerts` count as applied; any other stream change needs a restart."""
    applied, ignored = [], []
    for section in MonitorConfig.model_fields:
        if getattr(old, section) == getattr(new, section):
            continue
        if section in ("alerts", "logging"):
            applied.append(section)
        elif section == "streams" and _only_alerts_differ(old.streams, new.streams):
            applied.append("streams[].alerts")
        else:
            ignored.append(section)
    return applied, ignored


def _only_alerts_differ(old: list[StreamConfig], new: list[StreamConfig]) -> bool:
    if len(old) != len(new):
        return False
    return all(a.model_copy(update={"alerts": None}) == b.model_copy(update={"alerts": None})
               for a, b in zip(old, new))
