"""build_sink: the one place that turns `output.*` config into a Sink."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import requests
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.resources import Resource

from exporter import __version__
from exporter.config.output import OutputError, plan_output
from exporter.config.schema import OtlpConfig, OutputConfig
from exporter.config.schema import node_name as resolve_node_name
from exporter.emit.documents import DocumentLinesSink
from exporter.emit.jsonlines import JsonLinesSink
from exporter.emit.otlp import OtlpSink
from exporter.emit.otlpjson import OtlpJsonLinesExporter
from exporter.emit.processor import ExportQueueProcessor
from exporter.emit.shipper import RawShipper, SplitSink
from exporter.emit.text import TextSink
from exporter.mapping import Mapper

log = logging.getLogger("provex.emit")


@dataclass(frozen=True)
class OtlpTarget:
    """Where and how OTLP goes. Only what the config sets is here: whatever it leaves
    empty (headers, certificates, insecure, timeout, compression) the SDK's exporter
    reads from the standard OTEL_EXPORTER_OTLP_* variables itself."""

    protocol: str
    endpoint: str  # grpc: http(s)://host:port; http: the full URL of /v1/logs
    source: str = "config"  # or the variable the endpoint came from
    headers: dict[str, str] = field(default_factory=dict)
    insecure: bool | None = None
    certificate: str = ""
    client_key: str = ""
    client_certificate: str = ""
    timeout_s: float | None = None


def resolve_otlp(config: OtlpConfig, inherit_env: bool = True) -> OtlpTarget | None:
    """The OTLP destination, or None when neither config nor (if inherited) environment names one."""
    plan = plan_output(OutputConfig(schema="ecs", otlp=config), inherit_env=inherit_env)
    return _target(plan.output.otlp, plan.endpoint_source)


def _target(otlp: OtlpConfig, source: str) -> OtlpTarget | None:
    if not otlp.endpoint:
        return None
    for key in ("certificate", "client_key", "client_certificate"):
        path = getattr(otlp, key)
        if path and not Path(path).is_file():
            raise OutputError("no such file", f"output.otlp.{key} {path}", "expected a readable PEM file")
    return OtlpTarget(
        protocol=otlp.protocol,
        endpoint=otlp.endpoint,
        source=source,
        headers=dict(otlp.headers),
        insecure=otlp.insecure,
        certificate=otlp.certificate,
        client_key=otlp.client_key,
        client_certificate=otlp.client_certificate,
        timeout_s=otlp.timeout_s,
    )


_CERTIFICATE_VARS = ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE")


class _PinnedVerifySession(requests.Session):
    """requests lets $REQUESTS_CA_BUNDLE/$CURL_CA_BUNDLE override a session's CA
    bundle; a configured OTLP certificate must win, so keep the session's."""

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        settings["verify"] = self.verify
        return settings


def make_exporter(target: OtlpTarget) -> LogRecordExporter:
    """The SDK's OTLP log exporter for `target` (gRPC or HTTP/protobuf); None arguments
    leave the exporter to its standard variables. Over gRPC the request is encoded by
    exporter.emit.otlpproto (the same message, ~4x faster than the SDK's encoder); the HTTP
    exporter encodes inside its export(), so it keeps the SDK's."""
    if target.protocol == "grpc":
        import grpc

        from exporter.emit.otlpproto import OtlpGrpcLogExporter as GrpcExporter

        credentials = None
        if target.certificate or target.client_certificate:
            read = lambda p: Path(p).read_bytes() if p else None  # noqa: E731
            credentials = grpc.ssl_channel_credentials(
                root_certificates=read(target.certificate),
                private_key=read(target.client_key),
                certificate_chain=read(target.client_certificate),
            )
        return GrpcExporter(
            endpoint=target.endpoint,
            insecure=target.insecure,
            credentials=credentials,
            headers=target.headers or None,
            timeout=target.timeout_s,
        )
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpExporter

    # A CA bundle from config or from the OTLP variables must beat $REQUESTS_CA_BUNDLE.
    pinned = target.certificate or any(os.environ.get(v) for v in _CERTIFICATE_VARS)
    return HttpExporter(
        endpoint=target.endpoint,
        session=_PinnedVerifySession() if pinned else None,
        certificate_file=target.certificate or None,
        client_key_file=target.client_key or None,
        client_certificate_file=target.client_certificate or None,
        headers=target.headers or None,
        timeout=target.timeout_s,
    )


def build_resource(
    node_name: str = "",
    cluster_name: str = "",
    hostname: str = "",
    extra: Mapping[str, str] | None = None,
    recorded: bool = False,
) -> Resource:
    """The agent's Resource; OTEL_RESOURCE_ATTRIBUTES fills what is not given here.
    `recorded` (a replay): no host of its own, only a node name given as such."""
    hostname = "" if recorded else hostname or socket.gethostname()
    attrs = {
        "service.name": "provex",
        "service.version": __version__,
        "host.name": hostname,
        "k8s.node.name": node_name,
        "k8s.cluster.name": cluster_name,
        **(extra or {}),
    }
    return Resource.create({k: v for k, v in attrs.items() if v})


def build_sink(
    config: OutputConfig,
    *,
    node_name: str = "",
    cluster_name: str = "",
    hostname: str = "",
    resource_attrs: Mapping[str, str] | None = None,
    exporter: LogRecordExporter | None = None,
    inherit_env: bool = True,
    raw_in_child: bool = False,
    recorded: bool = False,
) -> JsonLinesSink | TextSink | DocumentLinesSink | OtlpSink | SplitSink:
    """The Sink (exporter.agent.pipeline.Sink) for `output.*`.

    raw: JSON lines (the replay format) or text; ecs/ocsf: mapped documents over OTLP,
    or without an endpoint one per line (format json) or as OTLP-JSON lines (format
    otlp-json). `inherit_env`: may an endpoint come from
    OTEL_EXPORTER_OTLP_[LOGS_]ENDPOINT (see exporter.config.output).

    `exporter` replaces the transport (tests, benchmarks). `raw_in_child`: raw events to a
    collector are mapped, encoded and exported by a child process (exporter.emit.shipper),
    so that they never hold the agent's alert path. `recorded`: the records are a replay
    (documents name the node each was recorded on: exporter.mapping.Mapper).
    """
    plan = plan_output(config, inherit_env=inherit_env and exporter is None)
    if plan.note:
        log.info("OTLP endpoint not used", extra={"fields": {"reason": plan.note}})
    config = plan.output
    if config.schema == "raw":
        return TextSink(config.file) if config.format == "text" else JsonLinesSink(config.file)
    if not recorded:
        hostname = hostname or socket.gethostname()
        node_name = resolve_node_name(node_name, hostname)
    mapper = Mapper(
        config.schema, node_name=node_name, cluster_name=cluster_name, hostname=hostname, recorded=recorded
    )
    otlp = config.otlp
    if exporter is not None:
        alert_exporter = event_exporter = exporter
    else:
        target = _target(otlp, plan.endpoint_source)
        if target is None and config.format != "otlp-json":
            return DocumentLinesSink(
                mapper,
                config.file,
                queue_size=otlp.queue_size,
                drop_warning_interval_s=otlp.drop_warning_interval_s,
            )
        if target is None:
            # One writer for both paths, so lines never interleave.
            alert_exporter = event_exporter = OtlpJsonLinesExporter(config.file)
        else:
            if raw_in_child and config.raw_events:
                alerts_only = msgspec.structs.replace(config, raw_events=False)
                alert_sink = build_sink(
                    alerts_only,
                    node_name=node_name,
                    cluster_name=cluster_name,
                    hostname=hostname,
                    resource_attrs=resource_attrs,
                    inherit_env=False,
                )
                return SplitSink(alert_sink, RawShipper(config, node_name, cluster_name))
            alert_exporter, event_exporter = make_exporter(target), make_exporter(target)
    common = {
        "max_attempts": otlp.max_attempts,
        "backoff_max_s": otlp.backoff_max_s,
        "warn_interval_s": otlp.drop_warning_interval_s,
    }
    alerts = ExportQueueProcessor(
        alert_exporter,
        "alerts",
        max_queue=otlp.alert_queue_size,
        max_batch=otlp.batch_size,
        delay_s=0,
        **common,
    )
    events = ExportQueueProcessor(
        event_exporter,
        "events",
        max_queue=otlp.queue_size,
        max_batch=otlp.batch_size,
        delay_s=otlp.batch_delay_ms / 1000,
        **common,
    )
    resource = build_resource(node_name, cluster_name, hostname, resource_attrs, recorded=recorded)
    return OtlpSink(
        mapper,
        resource,
        alerts,
        events,
        raw_events=config.raw_events,
        raw_queue_size=otlp.queue_size,
        drop_warning_interval_s=otlp.drop_warning_interval_s,
    )
