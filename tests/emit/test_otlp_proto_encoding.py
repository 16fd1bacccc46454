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

from exporter.emit.otlpproto import OtlpGrpcLogExporter, encode_request
from tests.emit.test_otlp_json_encoding import ODD_BODIES, _record, mapped_batches, odd_batch
from tests.helpers.otlp_receiver import OtlpReceiver, decode_records


def same_message(batch: Sequence[ReadableLogRecord]) -> bool:
    return ExportLogsServiceRequest.FromString(encode_request(batch)) == encode_logs(batch)


@pytest.mark.parametrize("schema", ["ecs", "ocsf"])
def test_every_mapped_document_encodes_as_the_sdk_does(schema: str) -> None:
    batches = mapped_batches(schema)
    for batch in batches:
        assert same_message(batch)
    assert same_message([r for b in batches for r in b])


def test_odd_values_resources_scopes_and_ids_encode_as_the_sdk_does() -> None:
    bodies = [*ODD_BODIES, -(2**63), 2**63 - 1, ("a", 1), "x" * 20000, {"long": ["y" * 300] * 100}]
    batch = odd_batch(bodies)
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
