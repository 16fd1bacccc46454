"""The OTLP/protobuf request is written straight to the wire format (exporter.emit.otlpproto):
decoded with the official protobufs it is the same ExportLogsServiceRequest the SDK's encoder
builds, for every document the mappings produce and for the odd values an AnyValue can hold;
and the gRPC exporter that uses it delivers to a real gRPC server."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from exporter.config.schema import OtlpConfig, OutputConfig
from exporter.emit import build_sink
from exporter.emit.otlpproto import OtlpGrpcLogExporter, encode_request
from exporter.model import Alert
from tests.emit.test_otlp_json_encoding import ODD_BODIES, Keep, _record
from tests.helpers.otlp_receiver import OtlpReceiver, decode_records
from tests.mapping.records import AGENT, records


def same_message(batch: Sequence[ReadableLogRecord]) -> bool:
    return ExportLogsServiceRequest.FromString(encode_request(batch)) == encode_logs(batch)


@pytest.mark.parametrize("schema", ["ecs", "ocsf"])
def test_every_mapped_document_encodes_as_the_sdk_does(schema: str) -> None:
    keep = Keep()
    sink = build_sink(OutputConfig(schema=schema, otlp=OtlpConfig(batch_size=7)), exporter=keep, **AGENT)
    for record in records().values():
        if isinstance(record, Alert):
            sink.emit_alert(record)
        else:
            sink.emit_event(record)
    sink.close()
    everything = [r for b in keep.batches for r in b]
    assert len(everything) >= len(records()) - 3  # (lineage events map to nothing)
    for batch in keep.batches:
        assert same_message(batch)
    assert same_message(everything)


def test_odd_values_resources_scopes_and_ids_encode_as_the_sdk_does() -> None:
    r1 = Resource.create({"service.name": "provex", "n": 1, "f": 0.5, "list": ["a", "b"]})
    r2 = Resource({}, schema_url="https://opentelemetry.io/schemas/1.30.0")
    s1 = InstrumentationScope("provex.alerts", "0.1.0", attributes={"elastic.mapping.mode": "bodymap"})
    s2 = InstrumentationScope("provex.events", None, schema_url="https://example/s")
    bodies = [*ODD_BODIES, -(2**63), 2**63 - 1, ("a", 1), "x" * 20000, {"long": ["y" * 300] * 100}]
    batch = [
        _record(
            body,
            (r1, r2)[n % 2],
            (s1, s2, None)[n % 3],
            timestamp=1764100000000000000 + n if n % 4 else None,
            observed_timestamp=1764100000000000999,
            attributes={"event.name": "provex.alert", "n": n, "ok": bool(n % 2), "ratio": n / 3},
            event_name=("provex.alert", "")[n % 2],
            trace_id=(0, 0x0AF7651916CD43DD8448EB211C80319C)[n % 2],
            span_id=(0, 0x00F067AA0BA902B7)[n % 2],
        )
        for n, body in enumerate(bodies)
    ]
    ours = ExportLogsServiceRequest.FromString(encode_request(batch))
    # NaN is not equal to itself: find it apart, compare everything else as whole messages.
    bodies_seen = [lr.body for rl in ours.resource_logs for sl in rl.scope_logs for lr in sl.log_records]
    assert sum(b.HasField("double_value") and math.isnan(b.double_value) for b in bodies_seen) == 1
    nan_body = next(i for i, b in enumerate(bodies) if isinstance(b, float) and math.isnan(b))
    del batch[nan_body]
    assert same_message(batch)
    assert encode_request([]) == b"" and encode_logs([]).SerializeToString() == b""


def test_a_value_no_anyvalue_can_hold_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="cannot encode object as an OTLP AnyValue"):
        encode_request([_record({"when": object()}, Resource({}), None)])
    with pytest.raises(ValueError, match="outside the int64 range"):  # as the SDK refuses it
        encode_request([_record({"n": 2**64 - 1}, Resource({}), None)])


def test_the_grpc_exporter_delivers_the_same_records_to_a_grpc_server() -> None:
    scope = InstrumentationScope("provex.alerts", "0.1.0")
    batch = [
        _record(
            {"event": {"id": f"e{n}"}, "n": n, "tags": ["a", "é"]},
            Resource({"k": "v"}),
            scope,
            timestamp=n + 1,
        )
        for n in range(5)
    ]
    with OtlpReceiver("grpc") as receiver:
        exporter = OtlpGrpcLogExporter(endpoint=receiver.endpoint, insecure=True)
        assert exporter.export(batch).name == "SUCCESS"
        got = receiver.wait_for(5)
        exporter.shutdown()
    assert got[0].resource == {"k": "v"}
    assert [r.body for r in got] == [{"event": {"id": f"e{n}"}, "n": n, "tags": ["a", "é"]} for n in range(5)]
    assert [r.time_unix_nano for r in got] == [1, 2, 3, 4, 5]
    received = [item.request for item in receiver.received]
    assert received[0] == encode_logs(batch)
    assert len(decode_records(receiver.received[0])) == 5
