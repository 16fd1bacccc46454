"""The OTLP sink end to end against the stand-in receiver (gRPC and HTTP/protobuf)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from bench.helpers.otlp_receiver import OtlpReceiver, any_to_py, kv_to_dict
from bench.helpers.records import AGENT, records
from exporter import __version__
from exporter.config.output import OutputError
from exporter.config.schema import OtlpConfig, OutputConfig
from exporter.emit import build_sink, resolve_otlp
from exporter.emit.otlp import OtlpSink
from exporter.mapping import Mapper
from exporter.model import Alert, Event
from tests.helpers.schemas import document_errors
from tests.helpers.tls import self_signed

RECORDS = records()
EVENTS = [r for r in RECORDS.values() if isinstance(r, Event)]
ALERTS = [r for r in RECORDS.values() if isinstance(r, Alert)]
PROTOCOLS = ["grpc", "http/protobuf"]


def _sink(schema: str, otlp: OtlpConfig, **kwargs: object) -> OtlpSink:
    sink = build_sink(
        OutputConfig(schema=schema, otlp=otlp),  # type: ignore[arg-type]
        node_name=AGENT["node_name"],
        cluster_name=AGENT["cluster_name"],
        hostname=AGENT["hostname"],
        **kwargs,  # type: ignore[arg-type]
    )
    assert isinstance(sink, OtlpSink)
    return sink


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("schema", ["ecs", "ocsf"])
def test_body_resource_attributes_and_severity(
    protocol: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,team=sec")
    mapper = Mapper(schema, version=__version__, **AGENT)
    with OtlpReceiver(protocol) as receiver:
        sink = _sink(schema, OtlpConfig(endpoint=receiver.endpoint, protocol=protocol))  # type: ignore[arg-type]
        for event in EVENTS:
            sink.emit_event(event)
        for alert in ALERTS:
            sink.emit_alert(alert)
        sink.flush()
        got = receiver.wait_for(len(EVENTS) + len(ALERTS))
        sink.close()
    by_id = {}
    for record in got:
        key = record.body["event"]["id"] if schema == "ecs" else record.body["metadata"]["uid"]
        by_id[key] = record
    for source in EVENTS + ALERTS:
        record = by_id[source.id]
        expected = mapper.map(source)
        assert expected is not None
        assert record.body == expected.body  # a structured map, equal to the mapped document
        assert document_errors(schema, record.body) == []
        assert record.attributes["event.name"] == f"provex.{expected.kind}" == record.event_name
        assert record.attributes["provex.schema"] == schema
        event = source.event if isinstance(source, Alert) else source
        if event is not None and event.container is not None:
            assert record.attributes["container.id"] == event.container.id
            if event.container.pod is not None:
                assert record.attributes["k8s.namespace.name"] == event.container.pod.namespace
                assert record.attributes["k8s.pod.name"] == event.container.pod.name
        else:
            assert "container.id" not in record.attributes
        if isinstance(source, Alert):
            assert record.scope_name == "provex.alerts"
            assert record.severity_text == source.level
        else:
            assert record.scope_name == "provex.events"
            assert record.severity_number == 9  # INFO
    assert by_id["a-sa-token-exfil-0001"].severity_number == 17  # high -> ERROR
    assert by_id["a-escape-0002"].severity_number == 21  # critical -> FATAL
    assert by_id["a-info-0003"].severity_number == 9  # informational -> INFO
    resource = got[0].resource
    assert resource["service.name"] == "provex"
    assert resource["service.version"] == __version__
    assert resource["host.name"] == AGENT["hostname"]
    assert resource["k8s.node.name"] == AGENT["node_name"]
    assert resource["k8s.cluster.name"] == AGENT["cluster_name"]
    assert resource["deployment.environment.name"] == "prod" and resource["team"] == "sec"
    scope_attrs = got[0].scope_attributes
    assert scope_attrs == ({"elastic.mapping.mode": "bodymap"} if schema == "ecs" else {})


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tls_and_headers_from_config(protocol: str, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with OtlpReceiver(protocol, tls=(cert, key)) as receiver:
        otlp = OtlpConfig(
            endpoint=receiver.endpoint,
            protocol=protocol,  # type: ignore[arg-type]
            certificate=cert,
            headers={"authorization": "Bearer s3cret", "x-tenant": "blue"},
        )
        sink = _sink("ocsf", otlp)
        sink.emit_alert(ALERTS[0])
        (record,) = receiver.wait_for(1)
        sink.close()
    assert record.headers["authorization"] == "Bearer s3cret"
    assert record.headers["x-tenant"] == "blue"
    assert record.body["finding_info"]["uid"] == ALERTS[0].id


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tls_and_headers_from_standard_variables(
    protocol: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    with OtlpReceiver(protocol, tls=(cert, key)) as receiver:
        base = receiver.endpoint.removesuffix("/v1/logs")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", base)  # http: the base URL gets /v1/logs
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Basic%20abc,x-scope-orgid=t1")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", cert)
        target = resolve_otlp(OtlpConfig())
        assert target is not None and target.endpoint == receiver.endpoint
        sink = _sink("ecs", OtlpConfig())
        sink.emit_alert(ALERTS[0])
        (record,) = receiver.wait_for(1)
        sink.close()
    assert record.headers["authorization"] == "Basic abc"
    assert record.headers["x-scope-orgid"] == "t1"


def test_signal_specific_variables_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://127.0.0.1:2/custom/logs")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf")
    target = resolve_otlp(OtlpConfig())
    assert target is not None
    assert (target.protocol, target.endpoint) == ("http/protobuf", "http://127.0.0.1:2/custom/logs")
    # Config beats the environment.
    target = resolve_otlp(OtlpConfig(endpoint="http://127.0.0.1:4317", protocol="grpc"))
    assert target is not None and (target.protocol, target.endpoint) == ("grpc", "http://127.0.0.1:4317")


def test_unsupported_protocol_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    with pytest.raises(OutputError, match="'http/json' is not supported"):
        resolve_otlp(OtlpConfig())


def test_no_endpoint_writes_otlp_json_lines(tmp_path: Path) -> None:
    out = tmp_path / "logs.jsonl"
    sink = build_sink(OutputConfig(schema="ecs", format="otlp-json", file=str(out)), **AGENT)
    for event in EVENTS[:3]:
        sink.emit_event(event)
    sink.emit_alert(ALERTS[0])
    sink.close()
    lines = out.read_text().splitlines()
    assert lines
    mapper = Mapper("ecs", version=__version__, **AGENT)
    bodies = {}
    for line in lines:
        assert "\n" not in line
        request = json_format.Parse(line, ExportLogsServiceRequest())  # the protobuf-JSON mapping
        raw = json.loads(line)
        assert "resourceLogs" in raw  # lowerCamelCase keys, as otlpjsonfile expects
        for rl in request.resource_logs:
            assert kv_to_dict(rl.resource.attributes)["service.name"] == "provex"
            for sl in rl.scope_logs:
                for lr in sl.log_records:
                    body = any_to_py(lr.body)
                    bodies[body["event"]["id"]] = body
    for source in [*EVENTS[:3], ALERTS[0]]:
        expected = mapper.map(source)
        assert expected is not None and bodies[source.id] == expected.body


def test_raw_schema_keeps_the_replay_sink(tmp_path: Path) -> None:
    from exporter.emit.jsonlines import JsonLinesSink

    sink = build_sink(OutputConfig(schema="raw", file=str(tmp_path / "raw.jsonl")))
    assert isinstance(sink, JsonLinesSink)
    sink.close()


def test_raw_events_off_ships_only_alerts() -> None:
    with OtlpReceiver("grpc") as receiver:
        config = OutputConfig(schema="ocsf", raw_events=False, otlp=OtlpConfig(endpoint=receiver.endpoint))
        sink = build_sink(config, **AGENT)
        for event in EVENTS:
            sink.emit_event(event)
        sink.emit_alert(ALERTS[0])
        sink.flush()
        records_ = receiver.wait_for(1)
        sink.close()
    assert [r.scope_name for r in records_] == ["provex.alerts"]


def test_alerts_never_wait_behind_the_event_batch() -> None:
    with OtlpReceiver("grpc") as receiver:
        # Raw events wait for a full batch or a minute; the alert must not.
        otlp = OtlpConfig(endpoint=receiver.endpoint, batch_delay_ms=60_000, batch_size=512)
        sink = build_sink(OutputConfig(schema="ecs", otlp=otlp), **AGENT)
        for event in EVENTS:
            sink.emit_event(event)
        sink.emit_alert(ALERTS[0])
        (first,) = receiver.wait_for(1)
        assert first.scope_name == "provex.alerts"
        assert all(r.scope_name == "provex.alerts" for r in receiver.records())  # events still batching
        sink.flush()  # flush releases the batch at once
        got = receiver.wait_for(1 + len(EVENTS))
        sink.close()
    assert sum(r.scope_name == "provex.events" for r in got) == len(EVENTS)


def test_raw_schema_with_an_otlp_endpoint_is_refused(monkeypatch):
    from exporter.config.output import OutputError
    from exporter.config.schema import OtlpConfig, OutputConfig
    from exporter.emit.factory import build_sink

    with pytest.raises(OutputError, match=r"OTLP needs the ecs or ocsf schema, but output\.schema is raw"):
        build_sink(OutputConfig(schema="raw", otlp=OtlpConfig(endpoint="http://127.0.0.1:4317")))


def test_an_endpoint_means_otlp_export_as_ecs(monkeypatch, tmp_path):
    """Like any OpenTelemetry program: an endpoint (config or OTEL_EXPORTER_OTLP_ENDPOINT) means
    OTLP, shaped as ECS unless a schema is chosen; an explicit raw ignores the variable."""
    from exporter.config.output import plan_output
    from exporter.config.schema import OtlpConfig, OutputConfig

    plan = plan_output(OutputConfig(otlp=OtlpConfig(endpoint="http://collector:4317")), environ={})
    assert (plan.output.schema, plan.output.otlp.endpoint, plan.output.otlp.protocol) == (
        "ecs",
        "http://collector:4317",
        "grpc",
    )
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    plan = plan_output(OutputConfig(), environ=env)
    assert (plan.output.schema, plan.output.otlp.endpoint, plan.endpoint_source) == (
        "ecs",
        "http://c:4318/v1/logs",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    )
    # Not inherited: by a replay, by a run writing a file, or when raw JSON lines are asked for.
    for output, inherit in (
        (OutputConfig(), False),
        (OutputConfig(file="x"), True),
        (OutputConfig(schema="raw"), True),
    ):
        plan = plan_output(output, environ=env, inherit_env=inherit)
        assert plan.output.otlp.endpoint == "" and plan.output.schema in ("raw", "ecs")
        assert "OTEL_EXPORTER_OTLP_ENDPOINT is set but not used" in plan.note
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    sink = build_sink(OutputConfig(file=str(tmp_path / "raw.jsonl")))  # raw: the variable stays unused
    sink.close()


def test_the_consumer_never_waits_for_the_collector_between_batches():
    """Pipeline.feed ends each drain with batch_done(): for OTLP that must not force an export
    (a blocking force_flush there held alerts behind raw events for ~1 s)."""
    from exporter.agent.pipeline import Pipeline
    from exporter.emit.otlp import OtlpSink

    calls = []

    class Recording(OtlpSink):
        def flush(self, timeout_s: float = 10.0) -> None:
            calls.append("flush")

    sink = Recording.__new__(Recording)  # no provider needed: nothing is emitted
    sink.raw_events = False
    Pipeline(sink).feed([], 0)
    assert calls == []
