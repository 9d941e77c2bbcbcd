"""The inference process: model, scorer, batcher, alerts, publishers, metrics server, audit log.

Start-up order matters for a live service: sockets are bound first (viewers may connect while the model
loads), then the model and detector are loaded and checked against each other, then the /metrics port
opens, and only then `ready` is set — the supervisor starts the capture processes after that, so that no
frame is captured before something can score it.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zmq
from prometheus_client import CollectorRegistry, ProcessCollector

from .. import bundled
from ..capture.ring import FrameRing
from ..config import ModelConfig, MonitorConfig
from ..errors import ArtifactError, StreamMonitorError
from ..observability import Metrics, OpsServer
from ..observability.http_handler import load_http_security
from ..preprocess import INPUT_SIZE
from ..service import ServiceProcess
from ..transport.schema import topic
from ..transport.security import ServerAuthenticator, server_from_config
from ..transport.sockets import Publisher, prepare_endpoint
from .audit import AuditLog
from .batcher import Batcher
from .loop import InferenceLoop
from .preflight import startup_error
from .reload import ConfigWatcher
from .viewer_frames import ViewerFramePublisher

__all__ = ["InferenceProcess", "load_scorer"]

log = logging.getLogger(__name__)
# A model / detector that fail their start-up check end the process, which Prometheus sees only as
# `up == 0`; the failure's gauge stays scrapeable this long first (two scrapes at 15 s) so an alert can
# say why (deploy/prometheus/rules/startup.rules.yml).
STARTUP_FAILURE_VISIBLE_S = 30.0


def warm_up(scorer: Any, batch_sizes: Sequence[int]) -> None:
    """Score a blank batch of each size once. The first call of a back-end pays for lazy
    initialisation (oneDNN primitives, OpenVINO infer requests, CUDA graphs: 2–3 s measured on the CPU);
    paid here, before `ready`, it does not hold up the first live frames."""
    score_uint8 = getattr(scorer, "score_uint8", None)  # the path the loop takes when the engine has it
    for size in sorted(set(batch_sizes)):
        if score_uint8 is not None:
            score_uint8(np.zeros((size, INPUT_SIZE, INPUT_SIZE, 3), np.uint8))
        else:
            scorer.score_batch(np.zeros((size, 3, INPUT_SIZE, INPUT_SIZE), np.float32))


def load_scorer(config: ModelConfig, batch_sizes: Sequence[int] = (1,)) -> tuple[Any, dict]:
    """Load classifier and NERO detector (bundled when not configured), check they belong together,
    build the engine's scorer and warm it up for `batch_sizes`. Returns (scorer, info for logs and
    build_info)."""
    import torch

    from ..baselines.serving import load_alert_detector
    from ..engine import build_scorer
    from ..explanations.assets import load_beside
    from ..explanations.pacing import MapBudget
    from ..models.registry import load_model_file, sha256_file
    from ..nero import NeroDetector
    from ..site.artifact import load_site_model
    from ..site.scorer import create_site_scorer

    if config.threads is not None:
        torch.set_num_threads(config.threads)
    checkpoint = config.checkpoint or bundled.MODEL
    detector_path = config.detector or bundled.DETECTOR
    model, meta = load_model_file(checkpoint, arch=config.arch, num_classes=config.num_classes, head=config.head,
                                  trust_pickle=config.trust_pickle)
    weight, bias = model.head_arrays()
    detector = NeroDetector.load(detector_path, weight=weight, bias=bias, model_sha256=sha256_file(checkpoint))
    explanation = load_beside(detector_path, weight, bias)  # the validated map and neuron drivers, if fitted
    alert = load_alert_detector(detector_path)  # a served detector other than NERO raises the alert, if stored
    site = load_site_model(detector_path)
    if alert is not None and site is not None:
        raise ArtifactError(f"{detector_path} holds both an alert detector ({alert.name}) and a site model; "
                            "enrollment calibrates against NERO's score: enroll a plain NERO detector")
    scorer = build_scorer(model, detector, backend=config.backend, precision=config.precision,
                          threads=config.threads, top_n=config.top_neurons, heatmaps=config.heatmap,
                          explanation=explanation, alert=alert, map_budget=MapBudget(config.map_budget))
    if site is not None:  # an enrolled site: the site model scores beside NERO (stream_monitor/site)
        scorer = create_site_scorer(scorer, model, site)
    warm_up(scorer, batch_sizes)
    info = {"backend": getattr(scorer, "backend", type(scorer).__name__), "model": Path(checkpoint).name,
            "arch": str(meta.get("arch", "?")), "detector": Path(detector_path).name,
            "threshold": scorer.threshold, "alert_detector": alert.name if alert is not None else "nero",
            "class_names": detector.class_names or list(meta.get("class_names", [])),
            "torch": torch.__version__, "threads": torch.get_num_threads()}
    return scorer, info


def _check(holder: dict, which: str) -> tuple[bool, dict]:
    if "failure" in holder:  # about to exit: alive (the exit is on purpose), never ready
        return which == "health", {"state": "start-up check failed", "error": holder["failure"]}
    loop = holder.get("loop")
    if loop is None:  # still loading the model: alive, not ready
        return which == "health", {"state": "loading model"}
    return loop.health() if which == "health" else loop.readiness()


class InferenceProcess(ServiceProcess):
    """Runs an `InferenceLoop` over the given rings until stopped.

    Args:
        config: the validated config (paths already absolute).
        config_path: file to watch for threshold reloads (None: no reload).
        rings: stream name → shared-memory ring name.
        wakeup_endpoint: where to bind the PULL socket the capture processes wake it through.
        ready_event: set once frames can be scored.
        info_queue: gets one dict with the bound endpoints and the metrics URL.
        done_event: set once every source is a replay that ended and every frame was scored (the
            process keeps serving /metrics until stopped, so that the end state can be scraped).
        wait_for_subscribers: result subscribers to wait for before `ready` (demo: its collector and overlay).
    """

    def __init__(self, config: MonitorConfig, config_path: Path | None, rings: dict[str, str], wakeup_endpoint: str,
                 ready_event: Any, info_queue: Any, stop_event: Any, log_queue: Any, done_event: Any = None,
                 wait_for_subscribers: int = 0) -> None:
        super().__init__("inference", stop_event, log_queue, config.logging.level)
        self.config, self.config_path, self.ring_names = config, config_path, rings
        self.wakeup_endpoint, self.ready_event, self.info_queue = wakeup_endpoint, ready_event, info_queue
        self.done_event, self.wait_for_subscribers = done_event, wait_for_subscribers

    def main(self) -> None:
        cfg = self.config
        self.interrupt_startup_on_sigterm()  # until ready: a stop must not wait for the model to load
        context = zmq.Context()
        closers: list[Any] = []
        stage = "wakeup socket"  # what start-up was doing, for the error the supervisor shows
        try:
            stage = "transport.curve"
            curve = server_from_config(cfg.transport.curve)  # None: plain sockets
            if curve is not None:
                authenticator = ServerAuthenticator(context, curve)
                closers.append(authenticator.stop)
            stage = "wakeup socket"
            wakeups = context.socket(zmq.PULL)
            wakeups.setsockopt(zmq.LINGER, 0)
            wakeups.bind(prepare_endpoint(self.wakeup_endpoint))
            closers.append(lambda: wakeups.close(linger=0))
            stage = "results"
            results = Publisher(context, cfg.transport.results, cfg.transport.send_hwm, curve)
            closers.append(lambda: results.close(linger_s=0.2))  # the streams' "stopped" status
            rings = {name: FrameRing.attach(shm) for name, shm in self.ring_names.items()}
            closers += [ring.close for ring in rings.values()]
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            metrics = Metrics(registry, cfg.metrics.frame_rate_hz, cfg.pipeline.max_batch)
            frames = None
            if cfg.transport.frames:
                stage = "frames"
                frames = ViewerFramePublisher(context, cfg.transport.frames, rings, metrics, cfg.transport.send_hwm,
                                              cfg.transport.jpeg_quality, cfg.transport.frames_max_fps, curve)
                frames.start()
                closers.append(frames.stop)
                frames.bound.wait(10)
                if frames.error is not None:
                    raise frames.error
            holder: dict[str, Any] = {}  # "loop" once running; "failure" if start-up failed
            ops = None
            if cfg.metrics.enabled:
                stage = "metrics"
                security = load_http_security(cfg.metrics.security, "metrics.security", open_paths=("/healthz", "/readyz"))
                ops = OpsServer(registry, lambda: _check(holder, "health"), lambda: _check(holder, "readiness"),
                                cfg.metrics.host, cfg.metrics.port, security).start()
                closers.append(ops.stop)
            # Everything is bound: tell the supervisor where, so viewers can connect while the model loads.
            self.info_queue.put({"results": results.endpoint, "frames": frames.endpoint if frames else None,
                                 "metrics_url": ops.url if ops else None})
            started, stage = time.monotonic(), "model"
            try:
                scorer, info = load_scorer(cfg.model, (1, cfg.pipeline.max_batch))
            except StreamMonitorError as exc:
                metrics.startup_check_failed.labels("model_detector").set(1)
                holder["failure"] = str(exc)
                self.interrupt_startup_on_sigterm(False)  # the wait below ends on the stop flag
                if ops is not None:  # nobody to see the gauge otherwise
                    log.error("model / detector check failed: %s (exiting in %.0f s; /metrics shows "
                              "stream_monitor_startup_check_failed until then)", exc, STARTUP_FAILURE_VISIBLE_S)
                    self.stop_event.wait(STARTUP_FAILURE_VISIBLE_S)
                raise
            log.info("engine %s: %s with %s, threshold %.6g, %d torch threads (loaded in %.1f s)", info["backend"],
                     info["model"], info["detector"], info["threshold"], info["threads"], time.monotonic() - started)
            metrics.set_build(info["backend"], info["model"], info["detector"], arch=info["arch"], torch=info["torch"])
            batcher = Batcher(rings, wakeups, cfg.pipeline.max_batch, cfg.pipeline.max_wait_ms / 1000,
                              cfg.pipeline.frames_per_stream,
                              None if cfg.pipeline.max_frame_age_ms is None else cfg.pipeline.max_frame_age_ms / 1000,
                              on_drop=metrics.dropped)
            stage = "audit.path"
            audit = AuditLog(cfg.audit.path, cfg.instance, cfg.audit.rotate_bytes)
            closers.append(audit.close)
            loop = holder["loop"] = InferenceLoop(cfg, scorer, info["class_names"], info["threshold"], rings,
                                                  batcher, results, metrics, audit, frames)
            stage = "serving"
            self._serve(loop, results, ops, audit, info)
        except Exception as exc:
            self.interrupt_startup_on_sigterm(False)
            if not self.ready_event.is_set():  # the supervisor is waiting: tell it why, naming the field
                self.info_queue.put({"error": startup_error(exc, stage)})
            raise
        finally:
            for close in reversed(closers):
                try:
                    close()
                except Exception:  # shutdown must reach the audit log and the rings whatever failed before
                    log.exception("error while shutting down")
            context.term()

    def _serve(self, loop: InferenceLoop, results: Publisher, ops: OpsServer | None, audit: AuditLog,
               info: dict) -> None:
        if self.wait_for_subscribers:
            if not results.wait_for_subscribers(topic("result", ""), self.wait_for_subscribers, timeout=30):
                log.warning("only %d of %d result subscribers connected; starting anyway",
                            results.subscribers_under(topic("result", "")), self.wait_for_subscribers)
        watcher = ConfigWatcher(self.config_path, self.config) if self.config_path else None
        if watcher is not None:
            signal.signal(signal.SIGHUP, lambda *_: setattr(watcher, "force", True))

        def tick() -> None:
            if self.done_event is not None and not self.done_event.is_set() and loop.batcher.exhausted:
                log.info("every source ended; %d frames scored", loop.processed)
                self.done_event.set()
            if watcher is None:
                return
            new, outcome = watcher.poll()
            if outcome:
                loop.metrics.config_reloads.labels(outcome).inc()
            if new is not None:
                logging.getLogger().setLevel(new.logging.level)
                loop.apply_config(new)

        self.interrupt_startup_on_sigterm(False)  # from here SIGTERM only asks the loop to stop (audit lines whole)
        audit.write("session_start", streams=[s.name for s in self.config.streams], backend=info["backend"],
                    model=info["model"], detector=info["detector"], threshold=info["threshold"])
        self.ready_event.set()
        log.info("ready: results on %s%s", results.endpoint, f", metrics on {ops.url}" if ops else "")
        reason = "shutdown"
        try:
            loop.run(self.stop_event.is_set, on_tick=tick)
        finally:
            loop.finish(reason)
            audit.write("session_end", reason=reason, frames_processed=loop.processed)
            # The anchor: a rewritten log would have to match this line in the service's journal too.
            log.info("audit chain head: n=%d sha256=%s (%s)", audit.head.n - 1, audit.head.hash, audit.path)
            log.info("inference stopped after %d frames (%s)", loop.processed, reason)
