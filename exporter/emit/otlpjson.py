"""OTLP-JSON lines: one ExportLogsServiceRequest per line, protobuf-JSON mapping.

This is the format the collector's `otlpjsonfile` receiver reads (and what
the `file` exporter writes), so `provex run > logs.jsonl` can be replayed
into any collector. It is the default when no OTLP endpoint is configured.

The line is built straight from the log records (`encode_request`): the same
JSON document as the SDK's protobuf encoder followed by protobuf's JSON printer
(`request_to_json(encode_logs(batch))`, kept as the reference the tests
compare against), at a small fraction of the cost: that route took ~2.8 ms
per ECS record, several times what mapping the record costs.

A line is written whole or not at all (exporter.emit.jsonlines.LineWriter);
a failed write is an export failure with its cause (no_space, ...), which the
export queue retries and, in the end, counts.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec
from google.protobuf import json_format
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from exporter.emit import outcome
from exporter.emit.jsonlines import LineWriter, write_cause


def request_to_json(request: object) -> str:
    """One line of OTLP/JSON: lowerCamelCase keys, enums as integers (per the OTLP spec)."""
    return json_format.MessageToJson(request, indent=None, use_integers_for_enums=True)  # type: ignore[arg-type]


_encoder = msgspec.json.Encoder()
T = TypeVar("T")


def by_resource_and_scope(
    batch: Sequence[ReadableLogRecord], encode: Callable[[ReadableLogRecord], T]
) -> dict[Any, dict[Any, list[T]]]:
    """Each record encoded, grouped by resource, then by scope, in the order first seen (as
    the SDK's encoder groups them; the OTLP/protobuf encoder shares this)."""
    grouped: dict[Any, dict[Any, list[T]]] = {}
    for record in batch:
        scopes = grouped.setdefault(record.resource, {})
        scopes.setdefault(record.instrumentation_scope or None, []).append(encode(record))
    return grouped


def encode_request(batch: Sequence[ReadableLogRecord]) -> bytes:
    """request_to_json(encode_logs(batch)) as UTF-8, without building the protobuf messages
    (the same JSON document; only the spacing differs)."""
    resource_logs = []
    for resource, scopes in by_resource_and_scope(batch, _log_record).items():
        scope_logs = []
        for scope, records in scopes.items():
            item: dict[str, Any] = {"scope": _scope(scope), "logRecords": records}
            if scope is not None and scope.schema_url:
                item["schemaUrl"] = scope.schema_url
            scope_logs.append(item)
        attributes = _attributes(resource.attributes)
        entry: dict[str, Any] = {
            "resource": {"attributes": attributes} if attributes else {},
            "scopeLogs": scope_logs,
        }
        if resource.schema_url:
            entry["schemaUrl"] = resource.schema_url
        resource_logs.append(entry)
    return _encoder.encode({"resourceLogs": resource_logs} if resource_logs else {})


def _log_record(readable: ReadableLogRecord) -> dict[str, Any]:
    """The fields set, in field-number order (as protobuf's printer lists them)."""
    log = readable.log_record
    out: dict[str, Any] = {}
    if log.timestamp:
        out["timeUnixNano"] = str(log.timestamp)
    severity = getattr(log.severity_number, "value", None)
    if severity:
        out["severityNumber"] = severity
    if log.severity_text:
        out["severityText"] = log.severity_text
    out["body"] = _any(log.body)
    attributes = _attributes(log.attributes)
    if attributes:
        out["attributes"] = attributes
    if readable.dropped_attributes:
        out["droppedAttributesCount"] = readable.dropped_attributes
    if int(log.trace_flags or 0):
        out["flags"] = int(log.trace_flags)
    if log.trace_id:
        out["traceId"] = base64.b64encode(log.trace_id.to_bytes(16, "big")).decode()
    if log.span_id:
        out["spanId"] = base64.b64encode(log.span_id.to_bytes(8, "big")).decode()
    if log.observed_timestamp:
        out["observedTimeUnixNano"] = str(log.observed_timestamp)
    if log.event_name:
        out["eventName"] = log.event_name
    return out


def _scope(scope: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if scope is None:
        return out
    if scope.name:
        out["name"] = scope.name
    if scope.version:
        out["version"] = scope.version
    attributes = _attributes(scope.attributes)
    if attributes:
        out["attributes"] = attributes
    return out


def _attributes(attributes: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return [_key_value(str(key), value) for key, value in (attributes or {}).items()]


def _key_value(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": _any(value)} if key else {"value": _any(value)}


def _any(value: Any) -> dict[str, Any]:
    """An AnyValue: a oneof, so its field is printed even when it holds a default."""
    kind = type(value)  # the common types first, without the slower isinstance checks
    if kind is str:
        return {"stringValue": value}
    if kind is dict:
        kvs = [{"key": str(k), "value": _any(v)} if k != "" else {"value": _any(v)} for k, v in value.items()]
        return {"kvlistValue": {"values": kvs} if kvs else {}}
    if kind is list:
        values = [_any(v) for v in value]
        return {"arrayValue": {"values": values} if values else {}}
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, str):
        return {"stringValue": str(value)}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        if math.isnan(value):
            return {"doubleValue": "NaN"}
        if math.isinf(value):
            return {"doubleValue": "Infinity" if value > 0 else "-Infinity"}
        return {"doubleValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, Sequence):
        return _any(list(value))
    if isinstance(value, Mapping):
        return _any(dict(value))
    raise TypeError(f"cannot encode {type(value).__name__} as an OTLP AnyValue")


class OtlpJsonLinesExporter(LogRecordExporter):
    """Shared by the alert and event queues (one writer, so lines never interleave)."""

    def __init__(self, path: str = "") -> None:
        self.writer = LineWriter(path)
        self._closed = False

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if self._closed:
            outcome.attempt_failed("closed", "output closed")
            return LogRecordExportResult.FAILURE
        line = encode_request(batch) + b"\n"
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
