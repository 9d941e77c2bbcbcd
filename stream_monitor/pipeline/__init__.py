"""The live pipeline: batcher, inference loop, alerts with hysteresis, audit log, viewer frames, the
inference process and the supervisor that runs everything (`Monitor`)."""

from .alerts import AlertEvent, AlertState, AlertTracker
from .audit import AuditLog, read_audit_log
from .batcher import Batcher, BatchItem

__all__ = ["AlertEvent", "AlertState", "AlertTracker", "AuditLog", "BatchItem", "Batcher", "read_audit_log"]
