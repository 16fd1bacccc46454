"""OTLP/protobuf bytes of a batch of log records, written straight to the wire format.

The SDK's encoder (`opentelemetry.exporter.otlp.proto.common._log_encoder.encode_logs`)
builds one protobuf object per AnyValue and KeyValue of every body: ~1 ms for one ECS alert
(~100 leaves) and ~100 us for a raw event, on the interpreter the alert path needs, and the
cap on raw events a second the shipper could export. This writes the same
ExportLogsServiceRequest (the tests compare the decoded messages with the SDK's on every
mapping fixture) in a fraction of that; the gRPC exporter parses it back in C
(`OtlpGrpcLogExporter`), so TLS, headers, compression, retries and the OTEL_* variables stay
the SDK's.

Field numbers are those of opentelemetry-proto's logs/v1, common/v1 and resource/v1.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import ReadableLogRecord

from exporter.emit.otlpjson import by_resource_and_scope

_DOUBLE = struct.Struct("<d")
_FIXED64 = struct.Struct("<Q")
_FIXED32 = struct.Struct("<I")
_UINT64 = (1 << 64) - 1
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Lengths below this (every key and nearly every value) are a list lookup, not a loop.
_SMALL = 1 << 14
_SMALL_VARINTS = [_encode_varint(n) for n in range(_SMALL)]


def _varint(n: int) -> bytes:
    return _SMALL_VARINTS[n] if n < _SMALL else _encode_varint(n)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag byte, the length, the bytes."""
    n = len(payload)
    return tag + (_SMALL_VARINTS[n] if n < _SMALL else _encode_varint(n)) + payload


# AnyValue (common/v1): string_value 1, bool_value 2, int_value 3, double_value 4,
# array_value 5, kvlist_value 6, bytes_value 7. A oneof member is written even when it holds
# its type's default, as the SDK's messages do.
def _any(value: Any) -> bytes:
    kind = type(value)  # the common types first, without the slower isinstance checks
    if kind is str:
        data = value.encode()
        return b"\x0a" + _varint(len(data)) + data
    if kind is dict:
        return _field(b"\x32", _attributes(value, b"\x0a"))
    if kind is list:
        return _field(b"\x2a", b"".join([_field(b"\x0a", _any(v)) for v in value]))
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _any(str(value))
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"integer {value} is outside the int64 range of an OTLP AnyValue")
        return b"\x18" + _varint(value & _UINT64)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _any(list(value))
    if isinstance(value, Mapping):
        return _any(dict(value))
    raise TypeError(f"cannot encode {type(value).__name__} as an OTLP AnyValue")


def _key_value(key: str, value: Any) -> bytes:
    """KeyValue: key 1, value 2 (always present: the SDK sets it, empty or not)."""
    if type(value) is str:  # most leaves: _any's first case, without the call
        data = value.encode()
        encoded = b"\x0a" + _varint(len(data)) + data
    else:
        encoded = _any(value)
    head = b"\x0a" + _varint(len(data)) + data if (data := key.encode()) else b""
    return head + b"\x12" + _varint(len(encoded)) + encoded


def _attributes(attributes: Mapping[str, Any] | None, tag: bytes) -> bytes:
    return b"".join([_field(tag, _key_value(str(k), v)) for k, v in (attributes or {}).items()])


def _log_record(readable: ReadableLogRecord) -> bytes:
    """LogRecord (logs/v1): time_unix_nano 1, severity_number 2, severity_text 3, body 5,
    attributes 6, dropped_attributes_count 7, flags 8, trace_id 9, span_id 10,
    observed_time_unix_nano 11, event_name 12."""
    log = readable.log_record
    parts = []
    if log.timestamp:
        parts.append(b"\x09" + _FIXED64.pack(log.timestamp))
    severity = getattr(log.severity_number, "value", None)
    if severity:
        parts.append(b"\x10" + _varint(severity & _UINT64))
    if log.severity_text:
        parts.append(_field(b"\x1a", log.severity_text.encode()))
    parts.append(_field(b"\x2a", _any(log.body)))
    parts.append(_attributes(log.attributes, b"\x32"))
    if readable.dropped_attributes:
        parts.append(b"\x38" + _varint(readable.dropped_attributes))
    flags = int(log.trace_flags or 0)
    if flags:
        parts.append(b"\x45" + _FIXED32.pack(flags))
    if log.trace_id:
        parts.append(_field(b"\x4a", log.trace_id.to_bytes(16, "big")))
    if log.span_id:
        parts.append(_field(b"\x52", log.span_id.to_bytes(8, "big")))
    if log.observed_timestamp:
        parts.append(b"\x59" + _FIXED64.pack(log.observed_timestamp))
    if log.event_name:
        parts.append(_field(b"\x62", log.event_name.encode()))
    return b"".join(parts)


def _scope(scope: Any) -> bytes:
    """InstrumentationScope: name 1, version 2, attributes 3."""
    if scope is None:
        return b""
    parts = []
    if scope.name:
        parts.append(_field(b"\x0a", scope.name.encode()))
    if scope.version:
        parts.append(_field(b"\x12", scope.version.encode()))
    parts.append(_attributes(scope.attributes, b"\x1a"))
    return b"".join(parts)


def encode_request(batch: Sequence[ReadableLogRecord]) -> bytes:
    """ExportLogsServiceRequest (resource_logs 1) as bytes: ResourceLogs (resource 1,
    scope_logs 2, schema_url 3), ScopeLogs (scope 1, log_records 2, schema_url 3), grouped
    by resource and scope in the order first seen, as the SDK groups them."""
    out = []
    for resource, scopes in by_resource_and_scope(batch, _log_record).items():
        scope_logs = []
        for scope, records in scopes.items():
            body = _field(b"\x0a", _scope(scope)) + b"".join([_field(b"\x12", r) for r in records])
            if scope is not None and scope.schema_url:
                body += _field(b"\x1a", scope.schema_url.encode())
            scope_logs.append(_field(b"\x12", body))
        entry = _field(b"\x0a", _attributes(resource.attributes, b"\x0a")) + b"".join(scope_logs)
        if resource.schema_url:
            entry += _field(b"\x1a", resource.schema_url.encode())
        out.append(_field(b"\x0a", entry))
    return b"".join(out)


class OtlpGrpcLogExporter(OTLPLogExporter):
    """The SDK's OTLP/gRPC log exporter with the request built by `encode_request` (parsed
    back into the message the stub sends, in C): everything else is the SDK's."""

    def _translate_data(self, data: Sequence[ReadableLogRecord]) -> ExportLogsServiceRequest:  # type: ignore[override]
        return ExportLogsServiceRequest.FromString(encode_request(data))
