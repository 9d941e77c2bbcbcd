"""Run the whole monitor on a file source until the replay is done, with a subscriber on its results."""

from __future__ import annotations

from collections.abc import Callable

from stream_monitor.config import MonitorConfig
from stream_monitor.pipeline.supervisor import Monitor
from stream_monitor.transport.collector import ResultCollector


def replay(config: MonitorConfig, on_message: Callable[[dict], None], timeout_s: float) -> dict:
    """Start, wait until every frame was scored (fails after timeout_s), stop; the exit codes by process."""
    collector = ResultCollector(on_message)
    monitor = Monitor(config, wait_for_subscribers=1, on_endpoints=collector.start_on)
    try:
        monitor.start()
        assert monitor.wait(timeout_s, until_done=True), "the replay did not finish in time"
    finally:
        codes = monitor.stop()
        collector.stop()
    return codes
