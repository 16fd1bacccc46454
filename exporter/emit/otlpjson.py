"""OTLP-JSON lines: one ExportLogsServiceRequest per line, protobuf-JSON mapping.

This is the format the collector's `otlpjsonfile` receiver reads (and what
the `file` exporter writes), so `provex run > logs.jsonl` can be replayed
into any collector. It is the default when no OTLP endpoint is configured.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import IO

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult


def request_to_json(request: object) -> str:
    """One line of OTLP/JSON: lowerCamelCase keys, enums as integers (per the OTLP spec)."""
    return json_format.MessageToJson(request, indent=None, use_integers_for_enums=True)  # type: ignore[arg-type]


class OtlpJsonLinesExporter(LogRecordExporter):
    def __init__(self, path: str = "") -> None:
        self._own = bool(path) and path != "-"
        self._out: IO[str] = open(path, "a", encoding="utf-8") if self._own else sys.stdout  # noqa: SIM115
        self._lock = threading.Lock()
        self._closed = False

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        line = request_to_json(encode_logs(batch)) + "\n"
        with self._lock:
            if self._closed:
                return LogRecordExportResult.FAILURE
            try:
                self._out.write(line)
                self._out.flush()
            except OSError:
                return LogRecordExportResult.FAILURE
        return LogRecordExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def shutdown(self) -> None:
        with self._lock:
            if self._own and not self._closed:
                self._out.close()
            self._closed = True
