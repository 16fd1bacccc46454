"""The stand-in receiver speaks real OTLP: the SDK's own exporters deliver to it."""

from __future__ import annotations

import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from bench.helpers.otlp_receiver import OtlpReceiver


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("compression", [None, "gzip"])
def test_sdk_exporters_deliver_to_the_stand_in(protocol: str, compression: str | None) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.exporter import Compression as GrpcCompression
    from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression

    with OtlpReceiver(protocol) as receiver:
        if protocol == "grpc":
            comp = GrpcCompression.Gzip if compression else None
            exporter = GrpcExporter(endpoint=receiver.endpoint, insecure=True, compression=comp, timeout=5)
        else:
            comp = HttpCompression.Gzip if compression else None
            exporter = HttpExporter(endpoint=receiver.endpoint, compression=comp, timeout=5)
        provider = LoggerProvider(resource=Resource.create({"service.name": "fidelity"}))
        provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
        logger = provider.get_logger("fidelity.scope", attributes={"a": "b"})
        logger.emit(
            LogRecord(
                body={"k": [1, "two", {"three": 3.0}], "flag": True},
                attributes={"x": "y"},
                severity_number=SeverityNumber.WARN,
                event_name="fidelity.test",
            )
        )
        (record,) = receiver.wait_for(1)
        provider.shutdown()
    assert record.body == {"k": [1, "two", {"three": 3.0}], "flag": True}
    assert record.resource["service.name"] == "fidelity"
    assert record.scope_name == "fidelity.scope" and record.scope_attributes == {"a": "b"}
    assert record.attributes == {"x": "y"}
    assert record.severity_number == SeverityNumber.WARN.value
    assert record.event_name == "fidelity.test"
