"""Metrics of the map and emit stages (on the agent's registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from exporter.metrics import REGISTRY

EXPORT_DROPPED = Counter(
    "provex_export_dropped",
    "Log records that never reached the collector, by signal (alerts/events) and cause",
    ["signal", "cause"],
    registry=REGISTRY,
)
EXPORT_RETRIES = Counter(
    "provex_export_retries",
    "Export attempts repeated after a failure, by signal",
    ["signal"],
    registry=REGISTRY,
)
EXPORTED = Counter(
    "provex_exported", "Log records the collector accepted, by signal", ["signal"], registry=REGISTRY
)
EXPORT_QUEUE = Gauge(
    "provex_export_queue", "Log records waiting to be exported, by signal", ["signal"], registry=REGISTRY
)
MAP_SKIPPED = Counter(
    "provex_map_skipped",
    "Records the mapping produced no document for, by cause",
    ["cause"],
    registry=REGISTRY,
)
