"""Observability: Prometheus metrics (one place for every name) and the /metrics, /healthz, /readyz server."""

from .metrics import DROP_REASONS, Metrics, latency_buckets
from .server import OpsServer

__all__ = ["DROP_REASONS", "Metrics", "OpsServer", "latency_buckets"]
