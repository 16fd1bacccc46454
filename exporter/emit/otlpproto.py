"""OTLP/protobuf bytes of log records, written straight to the wire format.

The SDK's encoder (`encode_logs`) builds one protobuf object per AnyValue and KeyValue of
every body (~100 leaves for an ECS alert, ~40 for a raw event) and serializes them again.
This writes the same ExportLogsServiceRequest (tests/emit/test_otlp_proto_encoding.py
compares the decoded messages with the SDK's on every mapping fixture) from the records'
values, once per record, on the thread that exports them: `ProtoEncoder.record` gives a
LogRecord's bytes, `ProtoEncoder.request` wraps a batch of them with the resource and
scope, encoded once per encoder. The bytes go to the collector as they are
(exporter.emit.sdkcompat).

Field numbers are those of opentelemetry-proto's logs/v1, common/v1 and resource/v1.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from exporter.emit.logrecord import LogRecord, Scope
from exporter.emit.native import NativeShapes
from exporter.emit.native import proto_writer as native_proto_writer
from exporter.emit.shapes import ShapeEncoder, proto_writer
from exporter.mapping.compiled import Fields

_DOUBLE = struct.Struct("<d")
_FIXED64 = struct.Struct("<Q")
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


# A map's entries are KeyValue messages (key 1, value 2) in field 1 of a KeyValueList. Most
# values are short strings, and keys repeat from document to document: for a key and a
# string of n < _SHORT bytes, everything before the string's own bytes is the same, so it is
# made once (`_HEADS[key][n]`). Keys come from the mappings and from label maps: bounded,
# and past _MAX_KEYS the rest are written without the cache. (A compiled mapping's documents
# take exporter.emit.shapes instead: their keys are laid out once per shape.)
_SHORT = 128
_MAX_KEYS = 8192
_KEYS: dict[Any, bytes] = {}  # key -> its KeyValue.key field (none for "")
_HEADS: dict[bytes, dict[Any, list[bytes | None]]] = {b"\x0a": {}, b"\x32": {}}  # by entry tag


def _key_field(key: Any) -> bytes:
    field = _KEYS.get(key)
    if field is None:
        data = str(key).encode()
        field = b"\x0a" + _varint(len(data)) + data if data else b""
        if len(_KEYS) < _MAX_KEYS:
            _KEYS[key] = field
    return field


def _heads(key: Any, tag: bytes = b"\x0a") -> list[bytes | None] | None:
    """The cache of `_string_head(key, n, tag)` for n < _SHORT (None: no room for the key)."""
    by_key = _HEADS[tag]
    heads = by_key.get(key)
    if heads is None and len(by_key) < _MAX_KEYS:
        heads = by_key[key] = [None] * _SHORT
    return heads


def _string_head(key: Any, n: int, tag: bytes = b"\x0a") -> bytes:
    """The bytes of a map entry (field `tag`) `key: <string of n bytes>` up to the string's
    own bytes."""
    heads = _heads(key, tag) if n < _SHORT else None
    if heads is not None and (head := heads[n]) is not None:
        return head
    key_field = _key_field(key)
    any_len = 1 + len(_varint(n)) + n  # AnyValue: string_value (1)
    kv_len = len(key_field) + 1 + len(_varint(any_len)) + any_len
    head = tag + _varint(kv_len) + key_field + b"\x12" + _varint(any_len) + b"\x0a" + _varint(n)
    if heads is not None:
        heads[n] = head
    return head


def _entries(mapping: Mapping[Any, Any]) -> bytes:
    """A KeyValueList's entries: field 1, a KeyValue each."""
    parts: list[bytes] = []
    append = parts.append
    for key, value in mapping.items():
        if value.__class__ is str:
            data = value.encode()  # text that is not UTF-8 raises: the caller escapes it
            n = len(data)
            if n < _SHORT:
                append(_string_head(key, n))
                append(data)
                continue
            encoded = b"\x0a" + _varint(n) + data
        else:
            encoded = _any(value)
        kv = _key_field(key) + b"\x12" + _varint(len(encoded)) + encoded
        append(b"\x0a")
        append(_varint(len(kv)))
        append(kv)
    return b"".join(parts)


# AnyValue (common/v1): string_value 1, bool_value 2, int_value 3, double_value 4,
# array_value 5, kvlist_value 6, bytes_value 7. A oneof member is written even when it holds
# its type's default, as the SDK's messages do.
def _any(value: Any) -> bytes:
    kind = value.__class__  # the common types first, without the slower isinstance checks
    if kind is str:
        data = value.encode()
        return b"\x0a" + _varint(len(data)) + data
    if kind is dict:
        return _field(b"\x32", _entries(value))
    if kind is list:
        return _field(b"\x2a", b"".join([_field(b"\x0a", _any(v)) for v in value]))
    if kind is int and 0 <= value < _SMALL:
        return b"\x18" + _SMALL_VARINTS[value]
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


_SHAPES = ShapeEncoder(
    "otlp-protobuf", proto_writer(_key_field, _any, _varint, _SMALL_VARINTS, _string_head, _heads)
)


def _native_shapes() -> NativeShapes:
    """The same bodies from C programs (exporter.emit.native): output.encoder native."""
    return NativeShapes("otlp-protobuf-native", native_proto_writer(_key_field, _any))


def _body(value: Any, shapes: ShapeEncoder | NativeShapes = _SHAPES) -> bytes:
    """A LogRecord's body: a compiled mapping's fields through the function of their shape."""
    if value.__class__ is Fields:
        encoded = shapes.encode(value)
        return encoded if encoded is not None else _any(value.nested())
    return _any(value)


def _attributes(attributes: Mapping[str, Any] | None, tag: bytes) -> bytes:
    """Repeated KeyValue under `tag` (the LogRecord's 6, a Resource's or a scope's)."""
    out = []
    for key, value in (attributes or {}).items():
        if value.__class__ is str and tag in _HEADS:  # a record's routing attributes
            data = value.encode()
            out.append(_string_head(key, len(data), tag) + data)
            continue
        encoded = _any(value)
        out.append(_field(tag, _key_field(str(key)) + b"\x12" + _varint(len(encoded)) + encoded))
    return b"".join(out)


class ProtoEncoder:
    """LogRecords of one resource and scope, and the requests that carry them."""

    encoding = "protobuf"

    def __init__(
        self, resource_attributes: Mapping[str, Any], resource_schema_url: str, scope: Scope
    ) -> None:
        # ResourceLogs: resource 1, scope_logs 2, schema_url 3; ScopeLogs: scope 1,
        # log_records 2, schema_url 3; InstrumentationScope: name 1, version 2, attributes 3.
        self._resource = _field(b"\x0a", _attributes(resource_attributes, b"\x0a"))
        self._resource_tail = _field(b"\x1a", resource_schema_url.encode()) if resource_schema_url else b""
        scope_bytes = b""
        if scope.name:
            scope_bytes += _field(b"\x0a", scope.name.encode())
        if scope.version:
            scope_bytes += _field(b"\x12", scope.version.encode())
        scope_bytes += _attributes(scope.attributes, b"\x1a")
        self._scope = _field(b"\x0a", scope_bytes)
        self._scope_tail = _field(b"\x1a", scope.schema_url.encode()) if scope.schema_url else b""
        self._shapes: ShapeEncoder | NativeShapes = _SHAPES  # .native(): the C encoder's

    def native(self) -> ProtoEncoder:
        """Bodies through the C encoder from now on (output.encoder: the same bytes)."""
        self._shapes = _native_shapes()
        return self

    def record(self, log: LogRecord) -> bytes:
        """LogRecord (logs/v1): time_unix_nano 1, severity_number 2, severity_text 3, body 5,
        attributes 6, observed_time_unix_nano 11, event_name 12; a field at its default is
        left out, as protobuf does."""
        parts = []
        if log.time_unix_nano:
            parts.append(b"\x09" + _FIXED64.pack(log.time_unix_nano))
        if log.severity_number:
            parts.append(b"\x10" + _varint(log.severity_number & _UINT64))
        if log.severity_text:
            parts.append(_field(b"\x1a", log.severity_text.encode()))
        parts.append(_field(b"\x2a", _body(log.body, self._shapes)))
        parts.append(_attributes(log.attributes, b"\x32"))
        if log.observed_time_unix_nano:
            parts.append(b"\x59" + _FIXED64.pack(log.observed_time_unix_nano))
        if log.event_name:
            parts.append(_field(b"\x62", log.event_name.encode()))
        return b"".join(parts)

    def request(self, records: Sequence[bytes]) -> bytes:
        """ExportLogsServiceRequest (resource_logs 1) with `records` under one resource and
        scope; empty when there are none."""
        if not records:
            return b""
        scope_logs = self._scope + b"".join([_field(b"\x12", r) for r in records]) + self._scope_tail
        resource_logs = self._resource + _field(b"\x12", scope_logs) + self._resource_tail
        return _field(b"\x0a", resource_logs)
