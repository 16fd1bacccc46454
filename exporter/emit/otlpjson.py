"""OTLP-JSON lines: one ExportLogsServiceRequest per line, protobuf-JSON mapping.

This is the format the collector's `otlpjsonfile` receiver reads (and what
the `file` exporter writes), so `provex run > logs.jsonl` can be replayed
into any collector. It is the default when no OTLP endpoint is configured.

A line is written whole or not at all (exporter.emit.jsonlines.LineWriter);
a failed write is an export failure with its cause (no_space, ...), which the
export queue retries and, in the end, counts.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from exporter.emit import outcome
from exporter.emit.jsonlines import LineWriter, write_cause


def request_to_json(request: object) -> str:
    """One line of OTLP/JSON: lowerCamelCase keys, enums as integers (per the OTLP spec)."""
    return json_format.MessageToJson(request, indent=None, use_integers_for_enums=True)  # type: ignore[arg-type]


class OtlpJsonLinesExporter(LogRecordExporter):
    """Shared by the alert and event queues (one writer, so lines never interleave)."""

    def __init__(self, path: str = "") -> None:
        self.writer = LineWriter(path)
        self._closed = False

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if self._closed:
            outcome.attempt_failed("closed", "output closed")
            return LogRecordExportResult.FAILURE
        line = (request_to_json(encode_logs(batch)) + "\n").encode()
        error = self.writer.write_now("events", line)
        if error is not None:
            outcome.attempt_failed(write_cause(error), f"{self.writer.name}: {error.strerror or error}")
            return LogRecordExportResult.FAILURE
        return LogRecordExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def shutdown(self) -> None:
        self._closed = True
        self.writer.close()
