"""Reload the config file without a restart: thresholds, hysteresis, smoothing, log level.

The inference process checks the file's modification time and size once a second (and at once on
SIGHUP). A changed file is validated in full; an invalid one is logged and counted, and the running
settings stay. Sections that cannot change on the fly (streams, model, transport, …) are logged as
needing a restart, and the rest is applied.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..config import MonitorConfig, reload_changes
from ..config_yaml import ConfigError, load_config

__all__ = ["ConfigWatcher"]

log = logging.getLogger(__name__)


class ConfigWatcher:
    """Polls one config file; `poll()` returns a validated new config when it changed, else None."""

    def __init__(self, path: str | Path, current: MonitorConfig, interval_s: float = 1.0) -> None:
        self.path = Path(path)
        self.current = current
        self.interval_s = interval_s
        self._stamp = self._read_stamp()
        self._next_check = time.monotonic() + interval_s
        self.force = False  # set from a SIGHUP handler

    def _read_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def poll(self) -> tuple[MonitorConfig | None, str | None]:
        """(new config to apply, or None; "applied" / "rejected" / None when nothing was tried)."""
        now = time.monotonic()
        if not self.force and now < self._next_check:
            return None, None
        self._next_check = now + self.interval_s
        stamp = self._read_stamp()
        if not self.force and stamp == self._stamp:
            return None, None
        self.force = False
        self._stamp = stamp
        try:
            new = load_config(self.path)
        except ConfigError as exc:
            log.error("config reload rejected, keeping the running settings: %s", exc)
            return None, "rejected"
        applied, ignored = reload_changes(self.current, new)
        if ignored:
            log.warning("config reload: %s changed but need a restart; not applied", ", ".join(ignored))
        if not applied:
            return None, None
        log.info("config reload: applying %s", ", ".join(applied))
        # Keep the running values of everything that needs a restart, so that a later reload compares
        # against what actually runs.
        merged = self.current.model_copy(update={"alerts": new.alerts, "logging": new.logging,
                                                 "streams": _with_alerts(self.current, new)})
        self.current = merged
        return merged, "applied"


def _with_alerts(current: MonitorConfig, new: MonitorConfig) -> list:
    by_name = {s.name: s for s in new.streams}
    return [s.model_copy(update={"alerts": by_name[s.name].alerts}) if s.name in by_name else s
            for s in current.streams]
