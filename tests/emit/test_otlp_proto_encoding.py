"""The OTLP/protobuf request is written straight to the wire format (exporter.emit.otlpproto):
decoded with the official protobufs it is the same ExportLogsServiceRequest the SDK's encoder
builds, for every document the mappings produce and for the odd values an AnyValue can hold;
and the gRPC exporter sends those very bytes to a real gRPC server."""

from __future__ import annotations

import math

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from bench.helpers.otlp_receiver import OtlpReceiver
from exporter.emit.factory import OtlpTarget, make_exporter
from exporter.emit.otlpproto import ProtoEncoder
from tests.emit.encoding_cases import (
    ODD_BODIES,
    RESOURCES,
    SCOPES,
    every_case,
    mapped,
    odd,
    ours,
    sdk_request,
)


def same_message(resource, scope, batch) -> bool:  # type: ignore[no-untyped-def]
    mine = ExportLogsServiceRequest.FromString(ours(ProtoEncoder, resource, scope, batch))
    return bool(mine == sdk_request(resource, scope, batch))


@pytest.mark.parametrize("schema", ["ecs", "ocsf"])
def test_every_mapped_document_encodes_as_the_sdk_does(schema: str) -> None:
    assert every_case(same_message, mapped(schema))


def test_odd_values_resources_and_scopes_encode_as_the_sdk_does() -> None:
    bodies = [*ODD_BODIES, -(2**63), 2**63 - 1, ("a", 1), {"long": ["y" * 300] * 100}]
    batch = odd(bodies)
    # NaN is not equal to itself: find it apart, compare everything else as whole messages.
    mine = ExportLogsServiceRequest.FromString(ours(ProtoEncoder, RESOURCES[0], SCOPES[0], batch))
    bodies_seen = [lr.body for rl in mine.resource_logs for sl in rl.scope_logs for lr in sl.log_records]
    assert sum(b.HasField("double_value") and math.isnan(b.double_value) for b in bodies_seen) == 1
    del batch[next(i for i, b in enumerate(bodies) if isinstance(b, float) and math.isnan(b))]
    for resource in RESOURCES:
        for scope in SCOPES:
            assert same_message(resource, scope, batch)
    assert ours(ProtoEncoder, RESOURCES[0], SCOPES[0], []) == b""


def test_a_value_no_anyvalue_can_hold_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="cannot encode object as an OTLP AnyValue"):
        ours(ProtoEncoder, RESOURCES[0], SCOPES[0], odd([{"when": object()}]))
    with pytest.raises(ValueError, match="outside the int64 range"):  # as the SDK refuses it
        ours(ProtoEncoder, RESOURCES[0], SCOPES[0], odd([{"n": 2**64 - 1}]))


def test_text_that_is_not_utf8_is_refused_for_the_caller_to_escape() -> None:
    with pytest.raises(UnicodeEncodeError):
        ours(ProtoEncoder, RESOURCES[0], SCOPES[0], odd([{"path": "/etc/\udcff"}]))


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_the_exporters_send_the_bytes_as_they_are(protocol: str) -> None:
    batch = odd([{"event": {"id": f"e{n}"}, "n": n, "tags": ["a", "é"]} for n in range(5)])
    request = ours(ProtoEncoder, RESOURCES[0], SCOPES[0], batch)
    with OtlpReceiver(protocol) as receiver:
        exporter = make_exporter(OtlpTarget(protocol=protocol, endpoint=receiver.endpoint, insecure=True))
        assert exporter.export(request, 5, "alerts") is True
        got = receiver.wait_for(5)
        exporter.shutdown()
    assert got[0].resource["service.name"] == "provex"
    assert [r.body for r in got] == [log.body for log in batch]
    assert receiver.received[0].request == ExportLogsServiceRequest.FromString(request)
    assert receiver.received[0].request == sdk_request(RESOURCES[0], SCOPES[0], batch)
