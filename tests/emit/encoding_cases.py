"""Log records for the encoding tests: the same records as provex's encoders take them and
as the OpenTelemetry SDK's encoder takes them (the reference)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from opentelemetry._logs import LogRecord as SdkLogRecord
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from bench.helpers.records import AGENT, records
from exporter.emit.logrecord import LogRecord, Scope
from exporter.emit.otlp import log_record
from exporter.emit.otlpjson import JsonEncoder
from exporter.emit.otlpproto import ProtoEncoder
from exporter.mapping import Mapper
from exporter.mapping.compiled import Fields
from exporter.model import Alert

RESOURCES = [
    Resource.create({"service.name": "provex", "n": 1, "f": 0.5, "list": ["a", "b"]}),
    Resource({}, schema_url="https://opentelemetry.io/schemas/1.30.0"),
]
SCOPES = [
    Scope("provex.alerts", "0.1.0", {"elastic.mapping.mode": "bodymap"}),
    Scope("provex.events", schema_url="https://example/s"),
]


def ours(
    encoder: type[ProtoEncoder | JsonEncoder], resource: Resource, scope: Scope, batch: Sequence[LogRecord]
) -> bytes:
    """provex's request for `batch`."""
    enc = encoder(resource.attributes, resource.schema_url or "", scope)
    return enc.request([enc.record(log) for log in batch])


def sdk_request(resource: Resource, scope: Scope, batch: Sequence[LogRecord]) -> ExportLogsServiceRequest:
    """The SDK's encoder's request for the same records."""
    sdk_scope = InstrumentationScope(
        scope.name, scope.version or None, scope.schema_url or None, scope.attributes
    )
    readable = [
        ReadableLogRecord(
            log_record=SdkLogRecord(
                timestamp=log.time_unix_nano or None,
                observed_timestamp=log.observed_time_unix_nano or None,
                severity_number=SeverityNumber(log.severity_number) if log.severity_number else None,
                severity_text=log.severity_text or None,
                body=log.body.nested() if isinstance(log.body, Fields) else log.body,
                attributes=log.attributes,
                event_name=log.event_name or None,
            ),
            resource=resource,
            instrumentation_scope=sdk_scope,
        )
        for log in batch
    ]
    return encode_logs(readable)


def mapped(schema: str) -> list[LogRecord]:
    """Every mapping fixture record as the sink turns it into a LogRecord."""
    mapper = Mapper(schema, **AGENT)
    out = []
    for record in records().values():
        doc = mapper.map(record)
        if doc is not None:
            log = log_record(record, doc, schema, observed_ns=1764100000000000999)
            out.append(log)
            assert isinstance(record, Alert) == log.event_name.endswith(".alert")
    return out


ODD_BODIES: list[object] = [
    None,
    "",
    'é ü 漢字 \u2028 "quoted" \\ back',
    0,
    -5,
    2**62,
    0.0,
    -1.5,
    1e300,
    float("nan"),
    float("inf"),
    float("-inf"),
    True,
    False,
    b"\x00\xffbytes",
    [],
    {},
    [1, "a", None, [2.5, {}], {"k": []}],
    {"": "empty key", "nested": {"list": [True, {"x": None}]}, "n": 3},
    {"short": "s" * 127, "long": "l" * 128, "longer": "x" * 20000},
]


def odd(bodies: Sequence[object]) -> list[LogRecord]:
    """A record per body, with and without times, severities and event names."""
    return [
        LogRecord(
            time_unix_nano=1764100000000000000 + n if n % 4 else 0,
            observed_time_unix_nano=1764100000000000999,
            severity_number=(17, 0, 9)[n % 3],
            severity_text=("high", "", "info")[n % 3],
            body=body,
            attributes={"event.name": "provex.alert", "n": n, "ok": bool(n % 2), "ratio": n / 3},
            event_name=("provex.alert", "")[n % 2],
        )
        for n, body in enumerate(bodies)
    ]


def every_case(same: Callable[[Resource, Scope, list[LogRecord]], bool], batch: list[LogRecord]) -> bool:
    """`same` holds for `batch` under every resource and scope, whole and one record at a time."""
    return all(
        same(resource, scope, batch) and all(same(resource, scope, [one]) for one in batch)
        for resource in RESOURCES
        for scope in SCOPES
    )
