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
    "provex_exported",
    "Records the output accepted (the collector, or the file or stdout), by signal",
    ["signal"],
    registry=REGISTRY,
)
EXPORT_QUEUE = Gauge(
    "provex_export_queue", "Log records waiting to be exported, by signal", ["signal"], registry=REGISTRY
)
EXPORT_IN_FLIGHT = Gauge(
    "provex_export_in_flight",
    "Log records handed to the exporter and not yet accepted or dropped, by signal",
    ["signal"],
    registry=REGISTRY,
)
EXPORT_RETRYING = Gauge(
    "provex_export_retrying",
    "Log records of a batch whose export failed at least once and is being retried, by signal",
    ["signal"],
    registry=REGISTRY,
)
EXPORT_ATTEMPT_FAILURES = Counter(
    "provex_export_attempt_failures",
    "Export attempts that failed (each retry counts), by signal and cause",
    ["signal", "cause"],
    registry=REGISTRY,
)
OUTPUT_WAITING = Gauge(
    "provex_output_waiting_lines",
    "Lines a file or stdout output could not write yet and will retry, by output",
    ["output"],
    registry=REGISTRY,
)
MAP_SKIPPED = Counter(
    "provex_map_skipped",
    "Records the mapping produced no document for, by cause",
    ["cause"],
    registry=REGISTRY,
)
OUTPUT_ESCAPED = Counter(
    "provex_output_text_escaped",
    "Records whose text held bytes that are not UTF-8 (a file name, an argument), written with "
    "those bytes escaped as \\xNN instead of being refused by the encoder, by signal",
    ["signal"],
    registry=REGISTRY,
)
