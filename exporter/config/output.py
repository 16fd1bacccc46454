"""Where output goes: the choice of OTLP endpoint, protocol and document schema.

An OTLP endpoint means OTLP export, shaped as ECS unless a schema is chosen, as
OpenTelemetry users expect. Without one, records go to a file or stdout in the
chosen format (json, text, otlp-json; auto: text for a person at a terminal). The endpoint comes from output.otlp.endpoint (the
`--otlp-endpoint` flag), else, for the agent (`provex run`) writing nowhere
else, from OTEL_EXPORTER_OTLP_LOGS_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT. A
replay, or a run told to write a file or given a format, does not pick up an
inherited endpoint.
Everything else about the transport (headers, certificates, timeout,
compression) the OpenTelemetry SDK's exporter reads from the standard
variables itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from exporter.config.schema import OutputConfig
from exporter.config.validate import url_problem
from exporter.errors import InputError

PROTOCOLS = ("grpc", "http/protobuf")
DOCUMENT_SCHEMAS = ("ecs", "ocsf")
ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOL_VARS = ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
SIGNAL_PATH = "/v1/logs"


class OutputError(InputError):
    """Output settings that contradict each other or name an unusable endpoint."""


@dataclass(frozen=True)
class OutputPlan:
    output: OutputConfig  # schema, otlp.endpoint and otlp.protocol decided
    endpoint_source: str  # "" (no OTLP), "config", or the variable it came from
    note: str = ""  # something inherited that was deliberately not used, for the log


def _label(labels: Mapping[tuple[str, ...], str] | None, key: tuple[str, ...], default: str) -> str:
    return (labels or {}).get(key, default)


def plan_output(
    output: OutputConfig,
    *,
    inherit_env: bool = True,
    environ: Mapping[str, str] | None = None,
    labels: Mapping[tuple[str, ...], str] | None = None,
    terminal: bool = False,
) -> OutputPlan:
    """Decide schema, format, endpoint and protocol; OutputError names the settings that clash.

    `labels` maps config keys to what the user typed (`--otlp-endpoint`, ...)
    for the messages; `inherit_env` is false for commands that must not ship
    to an endpoint they were not given (replay); `terminal`: stdout is a terminal
    (format auto writes text there when it writes to stdout).
    """
    environ = os.environ if environ is None else environ
    schema_key, endpoint_key, file_key = (
        ("output", "schema"),
        ("output", "otlp", "endpoint"),
        ("output", "file"),
    )
    schema_label = _label(labels, schema_key, "output.schema")
    format_label = _label(labels, ("output", "format"), "output.format")
    endpoint = output.otlp.endpoint
    source = "config" if endpoint else ""
    note = ""
    inherited = next(((v, environ[v]) for v in ENDPOINT_VARS if environ.get(v)), None)
    if not endpoint and inherited is not None:
        if inherit_env and not output.file and output.schema != "raw" and output.format == "auto":
            source, endpoint = inherited
            problem = url_problem(endpoint)
            if problem:
                raise OutputError(problem, f"environment {source}")
        else:
            why = "output.file is set" if output.file else "replay exports only to an endpoint it is given"
            if output.format != "auto" and inherit_env:
                why = f"{format_label} is {output.format}"
            if output.schema == "raw":
                why = f"{schema_label} is raw (JSON lines)"
            note = f"{inherited[0]} is set but not used: {why}"
    if endpoint and output.schema == "raw":
        raise OutputError(
            f"OTLP needs the ecs or ocsf schema, but {schema_label} is raw (JSON lines); drop one of them",
            f"{_label(labels, endpoint_key, 'output.otlp.endpoint')} {endpoint}",
        )
    if source == "config" and output.file:
        raise OutputError(
            "choose one (a file gets documents one per line, an endpoint gets OTLP)",
            f"{_label(labels, file_key, 'output.file')} {output.file} and "
            f"{_label(labels, endpoint_key, 'output.otlp.endpoint')} {endpoint}",
        )
    if endpoint and output.format != "auto":
        raise OutputError(
            f"{_label(labels, endpoint_key, 'output.otlp.endpoint')} {endpoint} and {format_label}"
            f" {output.format}: an endpoint gets OTLP, a format is for stdout or a file; drop one of them"
        )
    documents = endpoint or output.format == "otlp-json"
    schema = output.schema if output.schema != "auto" else ("ecs" if documents else "raw")
    if output.format == "text" and schema != "raw":
        raise OutputError(
            f"{format_label} text shows events and alerts as provex sees them, but {schema_label} is"
            f" {schema}; for {schema} documents use --format json (one per line) or otlp-json"
        )
    if output.format == "otlp-json" and schema not in DOCUMENT_SCHEMAS:
        raise OutputError(
            f"{format_label} otlp-json carries ecs or ocsf documents, but {schema_label} is {schema};"
            " choose --schema ecs or ocsf"
        )
    form = output.format
    if form == "auto" and not endpoint:
        to_stdout = output.file in ("", "-")
        form = "text" if terminal and to_stdout and schema == "raw" else "json"
    protocol = output.otlp.protocol
    if endpoint and not protocol:
        var = next((v for v in PROTOCOL_VARS if environ.get(v)), None)
        protocol = environ[var] if var else "grpc"
        if protocol not in PROTOCOLS:
            raise OutputError(
                f"{protocol!r} is not supported; expected one of: {', '.join(PROTOCOLS)}",
                f"environment {var}",
            )
    if endpoint:
        # A base URL (config or OTEL_EXPORTER_OTLP_ENDPOINT) gets the signal's path, as the SDK does;
        # the signal-specific variable is used as given.
        base = source != ENDPOINT_VARS[0] and not endpoint.rstrip("/").endswith(SIGNAL_PATH)
        if protocol == "http/protobuf" and base:
            endpoint = endpoint.rstrip("/") + SIGNAL_PATH
    otlp = msgspec.structs.replace(output.otlp, endpoint=endpoint, protocol=protocol)
    decided = msgspec.structs.replace(output, schema=schema, format=form, otlp=otlp)
    return OutputPlan(decided, source, note)
