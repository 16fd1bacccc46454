"""build_sink: the one place that turns `output.*` config into a Sink."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.resources import Resource

from exporter import __version__
from exporter.config.schema import OtlpConfig, OutputConfig
from exporter.emit.jsonlines import JsonLinesSink
from exporter.emit.otlp import OtlpSink
from exporter.emit.otlpjson import OtlpJsonLinesExporter
from exporter.emit.processor import ExportQueueProcessor
from exporter.mapping import Mapper

PROTOCOLS = ("grpc", "http/protobuf")


class OutputConfigError(ValueError):
    pass


def _env(name: str) -> str:
    """OTEL_EXPORTER_OTLP_LOGS_<name>, else OTEL_EXPORTER_OTLP_<name>."""
    return os.environ.get(f"OTEL_EXPORTER_OTLP_LOGS_{name}") or os.environ.get(
        f"OTEL_EXPORTER_OTLP_{name}", ""
    )


@dataclass(frozen=True)
class OtlpTarget:
    """Where and how OTLP goes, after config and the standard variables."""

    protocol: str
    endpoint: str  # grpc: http(s)://host:port; http: the full URL of /v1/logs
    headers: dict[str, str] = field(default_factory=dict)
    insecure: bool | None = None
    certificate: str = ""
    client_key: str = ""
    client_certificate: str = ""
    timeout_s: float = 10.0


def _parse_headers(text: str) -> dict[str, str]:
    """The OTEL_EXPORTER_OTLP_HEADERS format: k1=v1,k2=v2 (values URL-encoded)."""
    from urllib.parse import unquote

    headers = {}
    for part in text.split(","):
        if "=" in part:
            key, value = part.split("=", 1)
            headers[unquote(key.strip()).lower()] = unquote(value.strip())
    return headers


def resolve_otlp(config: OtlpConfig) -> OtlpTarget | None:
    """The OTLP destination, or None when neither config nor environment names one."""
    protocol = config.protocol or _env("PROTOCOL") or "grpc"
    if protocol not in PROTOCOLS:
        raise OutputConfigError(f"OTLP protocol {protocol!r} is not supported: expected one of {PROTOCOLS}")
    signal_url = os.environ.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "")
    base_url = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    endpoint = config.endpoint or signal_url or base_url
    if not endpoint:
        return None
    if (
        protocol == "http/protobuf"
        and endpoint != signal_url
        and not endpoint.rstrip("/").endswith("/v1/logs")
    ):
        # A base URL (config or OTEL_EXPORTER_OTLP_ENDPOINT) gets the signal path.
        endpoint = endpoint.rstrip("/") + "/v1/logs"
    if "://" not in endpoint:
        endpoint = "http://" + endpoint
    insecure = config.insecure
    if insecure is None and _env("INSECURE"):
        insecure = _env("INSECURE").lower() == "true"
    return OtlpTarget(
        protocol=protocol,
        endpoint=endpoint,
        headers=dict(config.headers) or _parse_headers(_env("HEADERS")),
        insecure=insecure,
        certificate=config.certificate or _env("CERTIFICATE"),
        client_key=config.client_key or _env("CLIENT_KEY"),
        client_certificate=config.client_certificate or _env("CLIENT_CERTIFICATE"),
        timeout_s=config.timeout_s,
    )


class _PinnedVerifySession(requests.Session):
    """requests lets $REQUESTS_CA_BUNDLE/$CURL_CA_BUNDLE override a session's CA
    bundle; a configured OTLP certificate must win, so keep the session's."""

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        settings["verify"] = self.verify
        return settings


def make_exporter(target: OtlpTarget) -> LogRecordExporter:
    """The SDK's OTLP log exporter for `target` (gRPC or HTTP/protobuf)."""
    if target.protocol == "grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcExporter

        credentials = None
        secure = target.endpoint.startswith("https://") or target.insecure is False
        if secure and (target.certificate or target.client_certificate):
            read = lambda p: Path(p).read_bytes() if p else None  # noqa: E731
            credentials = grpc.ssl_channel_credentials(
                root_certificates=read(target.certificate),
                private_key=read(target.client_key),
                certificate_chain=read(target.client_certificate),
            )
        return GrpcExporter(
            endpoint=target.endpoint,
            insecure=target.insecure if target.insecure is not None else not secure,
            credentials=credentials,
            headers=target.headers or None,
            timeout=target.timeout_s,
        )
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpExporter

    return HttpExporter(
        endpoint=target.endpoint,
        session=_PinnedVerifySession() if target.certificate else None,
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
) -> Resource:
    """The agent's Resource; OTEL_RESOURCE_ATTRIBUTES fills what is not given here."""
    hostname = hostname or socket.gethostname()
    attrs = {
        "service.name": "provex",
        "service.version": __version__,
        "host.name": hostname,
        "k8s.node.name": node_name or os.environ.get("NODE_NAME", ""),
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
) -> JsonLinesSink | OtlpSink:
    """The Sink (exporter.agent.pipeline) for `output.*`.

    raw: JSON lines (the replay format); ecs/ocsf: mapped documents over OTLP,
    or as OTLP-JSON lines when no endpoint is configured.

    `exporter` replaces the transport (tests, benchmarks).
    """
    if config.schema == "raw":
        target = resolve_otlp(config.otlp)
        if target is not None:
            # Raw events are the replay format, not OTLP: say so rather than ignore the endpoint.
            raise OutputConfigError(
                f"an OTLP endpoint is configured ({target.endpoint}) but output.schema is raw, "
                "which writes JSON lines: choose --schema ecs or --schema ocsf to export OTLP"
            )
        return JsonLinesSink(config.file)
    hostname = hostname or socket.gethostname()
    node_name = node_name or os.environ.get("NODE_NAME", "") or hostname
    mapper = Mapper(config.schema, node_name=node_name, cluster_name=cluster_name, hostname=hostname)
    otlp = config.otlp
    if exporter is not None:
        alert_exporter = event_exporter = exporter
    else:
        target = resolve_otlp(otlp)
        if target is None:
            # One writer for both paths, so lines never interleave.
            alert_exporter = event_exporter = OtlpJsonLinesExporter(config.file)
        else:
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
    resource = build_resource(node_name, cluster_name, hostname, resource_attrs)
    return OtlpSink(mapper, resource, alerts, events, raw_events=config.raw_events)
