"""The OTLP-JSON line is built directly: the same JSON document (same keys, same order, same
values) as the SDK's protobuf encoder and protobuf's JSON printer give (the reference), for
every document the mappings produce and for the odd values an AnyValue can hold."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from exporter.config.schema import OtlpConfig, OutputConfig
from exporter.emit import build_sink
from exporter.emit.otlpjson import encode_request, request_to_json
from exporter.model import Alert
from tests.mapping.records import AGENT, records


class Keep(LogRecordExporter):
    def __init__(self) -> None:
        self.batches: list[list[ReadableLogRecord]] = []

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.batches.append(list(batch))
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def same_document(batch: Sequence[ReadableLogRecord]) -> bool:
    ours = json.loads(encode_request(batch), object_pairs_hook=list)  # lists of pairs: order counts
    theirs = json.loads(request_to_json(encode_logs(batch)), object_pairs_hook=list)
    return bool(ours == theirs)


def mapped_batches(schema: str) -> list[list[ReadableLogRecord]]:
    """Every mapping fixture record through a sink of `schema`, as the batches it exports."""
    keep = Keep()
    sink = build_sink(OutputConfig(schema=schema, otlp=OtlpConfig(batch_size=7)), exporter=keep, **AGENT)
    for record in records().values():
        if isinstance(record, Alert):
            sink.emit_alert(record)
        else:
            sink.emit_event(record)
    sink.close()
    batches = [b for b in keep.batches if b]
    assert sum(len(b) for b in batches) >= len(records()) - 3  # (lineage events map to nothing)
    return batches


@pytest.mark.parametrize("schema", ["ecs", "ocsf"])
def test_every_mapped_document_encodes_as_the_reference(schema: str) -> None:
    batches = mapped_batches(schema)
    for batch in batches:
        assert same_document(batch)
    everything = [r for b in batches for r in b]
    assert same_document(everything)


def _record(
    body: object, resource: Resource, scope: InstrumentationScope | None, **kw: object
) -> ReadableLogRecord:
    return ReadableLogRecord(
        log_record=LogRecord(body=body, **kw),  # type: ignore[arg-type]
        resource=resource,
        instrumentation_scope=scope,
    )


ODD_BODIES = [
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
]


def odd_batch(bodies: Sequence[object]) -> list[ReadableLogRecord]:
    """A record per body, over two resources and three scopes (one of them none), with and
    without times, severities, event names and trace ids."""
    r1 = Resource.create({"service.name": "provex", "n": 1, "f": 0.5, "list": ["a", "b"]})
    r2 = Resource({}, schema_url="https://opentelemetry.io/schemas/1.30.0")
    s1 = InstrumentationScope("provex.alerts", "0.1.0", attributes={"elastic.mapping.mode": "bodymap"})
    s2 = InstrumentationScope("provex.events", None, schema_url="https://example/s")
    return [
        _record(
            body,
            (r1, r2)[n % 2],
            (s1, s2, None)[n % 3],
            timestamp=1764100000000000000 + n if n % 4 else None,
            observed_timestamp=1764100000000000999,
            severity_number=(SeverityNumber.ERROR, SeverityNumber.UNSPECIFIED, None)[n % 3],
            severity_text=("high", "", None)[n % 3],
            attributes={"event.name": "provex.alert", "n": n, "ok": bool(n % 2), "ratio": n / 3},
            event_name=("provex.alert", "")[n % 2],
            trace_id=(0, 0x0AF7651916CD43DD8448EB211C80319C)[n % 2],
            span_id=(0, 0x00F067AA0BA902B7)[n % 2],
        )
        for n, body in enumerate(bodies)
    ]


def test_odd_values_resources_scopes_and_ids_encode_as_the_reference() -> None:
    batch = odd_batch(ODD_BODIES)
    assert same_document(batch)
    assert encode_request([]) == b"{}" and request_to_json(encode_logs([])) == "{}"
