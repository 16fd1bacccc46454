"""OTLP-JSON lines: one ExportLogsServiceRequest per line, protobuf-JSON mapping.

This is the format the collector's `otlpjsonfile` receiver reads (and what the `file`
exporter writes), so `provex run > logs.jsonl` can be replayed into any collector. It is the
default when no OTLP endpoint is configured.

The JSON is written straight from the records' values (`JsonEncoder`): the same document as
the SDK's protobuf encoder followed by protobuf's JSON printer (tests/emit/
test_otlp_json_encoding.py compares them on every mapping fixture), at a small fraction of
the cost. A record's JSON is made once, on the thread that exports it; a request is the
resource and scope, encoded once per encoder, around a batch of them.

A line is written whole or not at all (exporter.emit.jsonlines.LineWriter); a failed write
is an export failure with its cause (no_space, ...), which the export queue retries and, in
the end, counts.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from exporter.emit import outcome
from exporter.emit.jsonlines import LineWriter, write_cause
from exporter.emit.logrecord import LogRecord, Scope
from exporter.emit.native import NativeShapes, ProgramSource
from exporter.emit.shapes import ShapeEncoder, json_writer
from exporter.mapping.compiled import Fields

_json = msgspec.json.Encoder().encode

# `"key":K,"value":` once per key (see otlpproto: keys repeat, and are bounded).
_MAX_KEYS = 8192
_HEADS: dict[Any, bytes] = {}


def _head(key: Any) -> bytes:
    head = _HEADS.get(key)
    if head is None:
        text = str(key)
        head = b'{"key":' + _json(text) + b',"value":' if text else b'{"value":'
        if len(_HEADS) < _MAX_KEYS:
            _HEADS[key] = head
    return head


def _entries(mapping: Mapping[Any, Any]) -> bytes:
    """A kvlistValue's `values`: one {"key", "value"} object per entry."""
    out = []
    for key, value in mapping.items():
        if value.__class__ is str:  # most leaves
            out.append(_head(key) + b'{"stringValue":' + _json(value) + b"}}")
        else:
            out.append(_head(key) + _any(value) + b"}")
    return b",".join(out)


def _any(value: Any) -> bytes:
    """An AnyValue: a oneof, so its field is printed even when it holds a default."""
    kind = value.__class__  # the common types first, without the slower isinstance checks
    if kind is str:
        return b'{"stringValue":' + _json(value) + b"}"
    if kind is dict:
        return b'{"kvlistValue":{"values":[' + _entries(value) + b"]}}" if value else b'{"kvlistValue":{}}'
    if kind is list:
        if not value:
            return b'{"arrayValue":{}}'
        return b'{"arrayValue":{"values":[' + b",".join([_any(v) for v in value]) + b"]}}"
    if kind is int:
        return b'{"intValue":"%d"}' % value  # int64 is a string in protobuf's JSON
    if value is None:
        return b"{}"
    if isinstance(value, bool):
        return b'{"boolValue":true}' if value else b'{"boolValue":false}'
    if isinstance(value, str):
        return _any(str(value))
    if isinstance(value, int):
        return b'{"intValue":"%d"}' % value  # int64 is a string in protobuf's JSON
    if isinstance(value, float):
        if math.isnan(value):
            return b'{"doubleValue":"NaN"}'
        if math.isinf(value):
            return b'{"doubleValue":"Infinity"}' if value > 0 else b'{"doubleValue":"-Infinity"}'
        return b'{"doubleValue":' + _json(value) + b"}"
    if isinstance(value, bytes):
        return b'{"bytesValue":"' + base64.b64encode(value) + b'"}'
    if isinstance(value, Sequence):
        return _any(list(value))
    if isinstance(value, Mapping):
        return _any(dict(value))
    raise TypeError(f"cannot encode {type(value).__name__} as an OTLP AnyValue")


_SHAPES = ShapeEncoder("otlp-json", json_writer(_head, _json, _any))


def _native_shapes() -> NativeShapes:
    """The same layouts run as C programs (exporter.emit.native): output.encoder native."""
    return NativeShapes("otlp-json-native", json_writer(_head, _json, _any, lambda: ProgramSource(_any)))


def _body(value: Any, shapes: ShapeEncoder | NativeShapes = _SHAPES) -> bytes:
    """A LogRecord's body: a compiled mapping's fields through the function of their shape."""
    if value.__class__ is Fields:
        encoded = shapes.encode(value)
        return encoded if encoded is not None else _any(value.nested())
    return _any(value)


def _attributes(attributes: Mapping[str, Any] | None) -> bytes:
    """`"attributes":[...]` and a comma, or nothing when there are none (as protobuf prints)."""
    if not attributes:
        return b""
    return b'"attributes":[' + _entries(attributes) + b"],"


class JsonEncoder:
    """LogRecords of one resource and scope as OTLP-JSON, and the lines that carry them."""

    encoding = "json"

    def __init__(
        self, resource_attributes: Mapping[str, Any], resource_schema_url: str, scope: Scope
    ) -> None:
        self._shapes: ShapeEncoder | NativeShapes = _SHAPES
        resource = _attributes(resource_attributes).rstrip(b",")
        scope_fields = []
        if scope.name:
            scope_fields.append(b'"name":' + _json(scope.name))
        if scope.version:
            scope_fields.append(b'"version":' + _json(scope.version))
        if scope.attributes:
            scope_fields.append(_attributes(scope.attributes).rstrip(b","))
        self._head = (
            b'{"resourceLogs":[{"resource":{'
            + resource
            + b'},"scopeLogs":[{"scope":{'
            + b",".join(scope_fields)
            + b'},"logRecords":['
        )
        scope_tail = b',"schemaUrl":' + _json(scope.schema_url) if scope.schema_url else b""
        resource_tail = b',"schemaUrl":' + _json(resource_schema_url) if resource_schema_url else b""
        self._tail = b"]" + scope_tail + b"}]" + resource_tail + b"}]}"

    def native(self) -> JsonEncoder:
        """Bodies through the C encoder from now on (output.encoder: the same bytes)."""
        self._shapes = _native_shapes()
        return self

    def record(self, log: LogRecord) -> bytes:
        """The fields set, in field-number order (as protobuf's printer lists them)."""
        out = b"{"
        if log.time_unix_nano:
            out += b'"timeUnixNano":"%d",' % log.time_unix_nano
        if log.severity_number:
            out += b'"severityNumber":%d,' % log.severity_number
        if log.severity_text:
            out += b'"severityText":' + _json(log.severity_text) + b","
        out += b'"body":' + _body(log.body, self._shapes) + b"," + _attributes(log.attributes)
        if log.observed_time_unix_nano:
            out += b'"observedTimeUnixNano":"%d",' % log.observed_time_unix_nano
        if log.event_name:
            out += b'"eventName":' + _json(log.event_name) + b","
        return out[:-1] + b"}"

    def request(self, records: Sequence[bytes]) -> bytes:
        """One ExportLogsServiceRequest as OTLP-JSON (no newline); `{}` when empty."""
        if not records:
            return b"{}"
        return self._head + b",".join(records) + self._tail


class OtlpJsonLinesExporter:
    """OTLP-JSON lines to a file or stdout, shared by the alert and event queues (one
    writer, so lines never interleave). An exporter (exporter.emit.processor.Exporter)."""

    encoding = "json"

    def __init__(self, path: str = "", writer: LineWriter | None = None) -> None:
        self.writer = writer or LineWriter(path)
        self.name = f"output {self.writer.name}"
        self._closed = False

    def export(self, request: bytes, records: int, signal: str) -> bool:
        if self._closed:
            outcome.attempt_failed("closed", "output closed")
            return False
        error = self.writer.write_now(signal, request + b"\n")
        if error is not None:
            outcome.attempt_failed(write_cause(error), f"{self.writer.name}: {error.strerror or error}")
            return False
        return True

    def shutdown(self) -> None:
        if not self._closed:
            self._closed = True
            self.writer.close()
