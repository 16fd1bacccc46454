"""build_sink: the one place that turns `output.*` config into a Sink."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from opentelemetry.sdk.resources import Resource

from exporter import __version__
from exporter.config.output import OutputError, plan_output
from exporter.config.schema import OtlpConfig, OutputConfig
from exporter.config.schema import node_name as resolve_node_name
from exporter.emit import native as emit_native
from exporter.emit import sdkcompat
from exporter.emit.documents import DocumentLinesSink
from exporter.emit.jsonlines import JsonLinesSink
from exporter.emit.otlp import OtlpSink
from exporter.emit.otlpjson import OtlpJsonLinesExporter
from exporter.emit.processor import Exporter
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


# The target's fields the config sets under the same names (all but `source`).
_FROM_CONFIG = tuple(f.name for f in fields(OtlpTarget) if f.name != "source")


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
    given = {key: getattr(otlp, key) for key in _FROM_CONFIG}
    given["headers"] = dict(otlp.headers)  # the target's own copy
    return OtlpTarget(**given, source=source)


_CERTIFICATE_VARS = ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE")


def make_exporter(target: OtlpTarget) -> Exporter:
    """An exporter of OTLP/protobuf requests to `target` over gRPC or HTTP, through the SDK's
    own exporter (exporter.emit.sdkcompat: its retries and OTEL_* variables); None arguments
    leave the SDK to its standard variables. gRPC is imported only here, for gRPC."""
    if target.protocol == "grpc":
        import grpc

        credentials = None
        if target.certificate or target.client_certificate:
            read = lambda p: Path(p).read_bytes() if p else None  # noqa: E731
            credentials = grpc.ssl_channel_credentials(
                root_certificates=read(target.certificate),
                private_key=read(target.client_key),
                certificate_chain=read(target.client_certificate),
            )
        return sdkcompat.grpc_exporter(
            endpoint=target.endpoint,
            insecure=target.insecure,
            credentials=credentials,
            headers=target.headers or None,
            timeout=target.timeout_s,
        )
    # A CA bundle from config or from the OTLP variables must beat $REQUESTS_CA_BUNDLE.
    pinned = bool(target.certificate or any(os.environ.get(v) for v in _CERTIFICATE_VARS))
    return sdkcompat.http_exporter(
        pin_ca_bundle=pinned,
        endpoint=target.endpoint,
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
    exporter: Exporter | None = None,
    inherit_env: bool = True,
    consumer_idle: threading.Event | None = None,
    recorded: bool = False,
) -> JsonLinesSink | TextSink | DocumentLinesSink | OtlpSink:
    """The Sink (exporter.agent.pipeline.Sink) for `output.*`.

    raw: JSON lines (the replay format) or text; ecs/ocsf: mapped documents over OTLP,
    or without an endpoint one per line (format json) or as OTLP-JSON lines (format
    otlp-json). `inherit_env`: may an endpoint come from
    OTEL_EXPORTER_OTLP_[LOGS_]ENDPOINT (see exporter.config.output).

    `exporter` replaces the transport (tests, benchmarks): it gets both signals' requests.
    `consumer_idle`: set while the live agent's consumer is idle; raw events are mapped and
    encoded in those gaps (and between alerts), so that they never slow the alert path.
    `recorded`: the records are a replay (documents name the node each was recorded on:
    exporter.mapping.Mapper).
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
    target = None if exporter is not None else _target(config.otlp, plan.endpoint_source)
    native = emit_native.wanted(config.encoder)
    if exporter is None and target is None and config.format != "otlp-json":
        return DocumentLinesSink(
            mapper,
            config.file,
            queue_size=config.otlp.queue_size,
            drop_warning_interval_s=config.otlp.drop_warning_interval_s,
            native=native,
        )
    dependency = "collector"
    if exporter is not None:
        alert_exporter = event_exporter = exporter
    elif target is None:
        # One writer for both signals, so lines never interleave.
        alert_exporter = event_exporter = OtlpJsonLinesExporter(config.file)
        dependency = "output"
    else:
        # A channel (connection) each: raw events never queue in front of an alert.
        alert_exporter = make_exporter(target)
        event_exporter = make_exporter(target) if config.raw_events else alert_exporter
    return OtlpSink(
        mapper,
        build_resource(node_name, cluster_name, hostname, resource_attrs, recorded=recorded),
        alert_exporter,
        event_exporter,
        otlp=config.otlp,
        raw_events=config.raw_events,
        dependency=dependency,
        consumer_idle=consumer_idle,
        native=native,
    )
